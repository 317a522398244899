-- The runtime's history of applied transitions. One row per applied transition; the primary key
-- (table, entity id, version) makes it impossible to record the same version of an entity
-- twice.
CREATE TABLE IF NOT EXISTS fsm_history (
    entity_table VARCHAR(64)  NOT NULL,
    machine    VARCHAR(191) NOT NULL,
    entity_id  VARCHAR(191) NOT NULL,
    version    BIGINT       NOT NULL,
    from_state VARCHAR(191) NOT NULL,
    to_state   VARCHAR(191) NOT NULL,
    event      VARCHAR(191),
    at_micros  BIGINT       NOT NULL,
    PRIMARY KEY (entity_table, entity_id, version)
) ENGINE = InnoDB;
