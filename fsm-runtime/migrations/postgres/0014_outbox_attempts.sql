-- An outbox that survives poison messages: a failed message waits until
-- `next_attempt_at_micros` (exponential backoff with jitter), keeps its last error, and after
-- the relay's maximum of attempts is parked as dead (`dead_at_micros`). Existing rows get 0 and
-- NULL: they are due at once and alive. The key index serves the claim's per-key order (no
-- earlier live message of the same topic and key); the published index serves the purge; the
-- inbox index serves the inbox's purge.
ALTER TABLE fsm_outbox ADD COLUMN IF NOT EXISTS next_attempt_at_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE fsm_outbox ADD COLUMN IF NOT EXISTS last_error TEXT;
ALTER TABLE fsm_outbox ADD COLUMN IF NOT EXISTS dead_at_micros BIGINT;
CREATE INDEX IF NOT EXISTS fsm_outbox_key_pending ON fsm_outbox (topic, message_key, id)
    WHERE published_at_micros IS NULL AND dead_at_micros IS NULL;
CREATE INDEX IF NOT EXISTS fsm_outbox_published ON fsm_outbox (published_at_micros)
    WHERE published_at_micros IS NOT NULL;
CREATE INDEX IF NOT EXISTS fsm_outbox_dead ON fsm_outbox (id) WHERE dead_at_micros IS NOT NULL;
CREATE INDEX IF NOT EXISTS fsm_inbox_processed ON fsm_inbox (processed_at_micros);
