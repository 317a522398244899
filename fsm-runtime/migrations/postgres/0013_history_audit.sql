-- The audit trail: who moved an entity (actor), why (reason), under which request (the
-- idempotency key that applied it) and free JSON metadata; and histories that outlive their
-- entity. `delete` marks the entity's rows with the time it was deleted (`deleted_at_micros`,
-- 0 while the entity lives), so an id created again starts a history of its own. The primary
-- key names the machine: two machines on one table (two state columns of one row) each have
-- their own versions.
ALTER TABLE fsm_history
    ADD COLUMN IF NOT EXISTS actor TEXT,
    ADD COLUMN IF NOT EXISTS reason TEXT,
    ADD COLUMN IF NOT EXISTS idempotency_key TEXT,
    ADD COLUMN IF NOT EXISTS metadata TEXT,
    ADD COLUMN IF NOT EXISTS deleted_at_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE fsm_history DROP CONSTRAINT IF EXISTS fsm_history_pkey;
ALTER TABLE fsm_history ADD CONSTRAINT fsm_history_pkey
    PRIMARY KEY (entity_table, machine, entity_id, deleted_at_micros, version);
