-- The runtime's history of applied transitions. One row per applied transition; the primary key
-- (table, entity id, version) makes it impossible to record the same version of an entity
-- twice.
CREATE TABLE IF NOT EXISTS fsm_history (
    entity_table TEXT    NOT NULL,
    machine    TEXT    NOT NULL,
    entity_id  TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    from_state TEXT    NOT NULL,
    to_state   TEXT    NOT NULL,
    event      TEXT,
    at_micros  INTEGER NOT NULL,
    PRIMARY KEY (entity_table, entity_id, version)
) WITHOUT ROWID;
