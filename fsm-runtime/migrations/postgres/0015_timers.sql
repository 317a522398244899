-- Timers: an event to fire at an entity at a time, written in the transaction of the transition
-- that started it, and fired by a scheduler through the ordinary compare-and-set.
-- `claimed_until_micros` is a scheduler's lease on it; `done_at_micros` and `outcome` say when
-- and how it ended (fired, replayed, already applied, invalid transition, not found).
-- `entity_int` holds an integer id (then `entity_id` is its text); NULL for a text id.
CREATE TABLE IF NOT EXISTS fsm_timers (
    id                   BIGSERIAL PRIMARY KEY,
    timer_id             TEXT    NOT NULL UNIQUE,
    machine              TEXT    NOT NULL,
    entity_table         TEXT    NOT NULL,
    entity_id            TEXT    NOT NULL,
    entity_int           BIGINT,
    event                TEXT    NOT NULL,
    due_at_micros        BIGINT  NOT NULL,
    created_at_micros    BIGINT  NOT NULL,
    claimed_until_micros BIGINT  NOT NULL DEFAULT 0,
    attempts             BIGINT  NOT NULL DEFAULT 0,
    last_error           TEXT,
    done_at_micros       BIGINT,
    outcome              TEXT
);
CREATE INDEX IF NOT EXISTS fsm_timers_due ON fsm_timers (machine, entity_table, due_at_micros)
    WHERE done_at_micros IS NULL;
