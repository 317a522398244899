-- An outbox that survives poison messages: a failed message waits until
-- `next_attempt_at_micros` (exponential backoff with jitter), keeps its last error, and after
-- the relay's maximum of attempts is parked as dead (`dead_at_micros`). Existing rows get 0 and
-- NULL: they are due at once and alive. The key index serves the claim's per-key order (no
-- earlier live message of the same topic and key); the published index serves the purge; the
-- inbox index serves the inbox's purge. Each statement is atomic: a second process's duplicate
-- column (1060) or index (1061) means it ran first.
ALTER TABLE fsm_outbox
    ADD COLUMN next_attempt_at_micros BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN last_error TEXT NULL,
    ADD COLUMN dead_at_micros BIGINT NULL,
    ADD INDEX fsm_outbox_key_pending (topic, message_key, published_at_micros, dead_at_micros, id),
    ADD INDEX fsm_outbox_dead (dead_at_micros, id);
CREATE INDEX fsm_inbox_processed ON fsm_inbox (processed_at_micros);
