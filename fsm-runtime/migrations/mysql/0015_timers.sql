-- Timers: an event to fire at an entity at a time, written in the transaction of the transition
-- that started it, and fired by a scheduler through the ordinary compare-and-set.
-- `claimed_until_micros` is a scheduler's lease on it; `done_at_micros` and `outcome` say when
-- and how it ended (fired, replayed, already applied, invalid transition, not found).
-- `entity_int` holds an integer id (then `entity_id` is its text); NULL for a text id.
-- One statement (MySQL commits DDL implicitly): the index is declared with the table.
CREATE TABLE IF NOT EXISTS fsm_timers (
    id                   BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    timer_id             VARCHAR(64)  NOT NULL UNIQUE,
    machine              VARCHAR(191) NOT NULL,
    entity_table         VARCHAR(191) NOT NULL,
    entity_id            TEXT         NOT NULL,
    entity_int           BIGINT,
    event                VARCHAR(191) NOT NULL,
    due_at_micros        BIGINT       NOT NULL,
    created_at_micros    BIGINT       NOT NULL,
    claimed_until_micros BIGINT       NOT NULL DEFAULT 0,
    attempts             BIGINT       NOT NULL DEFAULT 0,
    last_error           TEXT,
    done_at_micros       BIGINT,
    outcome              VARCHAR(64),
    INDEX fsm_timers_due (machine, entity_table, done_at_micros, due_at_micros)
) ENGINE = InnoDB CHARACTER SET utf8mb4 COLLATE {binary_collation};
