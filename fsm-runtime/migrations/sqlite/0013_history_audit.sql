-- The audit trail: who moved an entity (actor), why (reason), under which request (the
-- idempotency key that applied it) and free JSON metadata; and histories that outlive their
-- entity. `delete` marks the entity's rows with the time it was deleted (`deleted_at_micros`,
-- 0 while the entity lives), so an id created again starts a history of its own. The primary
-- key names the machine: two machines on one table (two state columns of one row) each have
-- their own versions. SQLite cannot change a primary key: the table is copied.
CREATE TABLE fsm_history_v13 (
    entity_table      TEXT    NOT NULL,
    machine           TEXT    NOT NULL,
    entity_id         TEXT    NOT NULL,
    version           INTEGER NOT NULL,
    from_state        TEXT    NOT NULL,
    to_state          TEXT    NOT NULL,
    event             TEXT,
    at_micros         INTEGER NOT NULL,
    actor             TEXT,
    reason            TEXT,
    idempotency_key   TEXT,
    metadata          TEXT,
    deleted_at_micros INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (entity_table, machine, entity_id, deleted_at_micros, version)
) WITHOUT ROWID;
INSERT INTO fsm_history_v13 (entity_table, machine, entity_id, version, from_state, to_state, event, at_micros)
    SELECT entity_table, machine, entity_id, version, from_state, to_state, event, at_micros FROM fsm_history;
DROP TABLE fsm_history;
ALTER TABLE fsm_history_v13 RENAME TO fsm_history;
