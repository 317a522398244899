-- Idempotency keys: one row per applied keyed request, with the request's fingerprint and the
-- stored outcome, written in the same transaction as the work.
CREATE TABLE IF NOT EXISTS fsm_idempotency_keys (
    source            TEXT   NOT NULL,
    seq               BIGINT NOT NULL,
    fingerprint       TEXT   NOT NULL,
    outcome           TEXT   NOT NULL,
    created_at_micros BIGINT NOT NULL,
    PRIMARY KEY (source, seq)
);
CREATE INDEX IF NOT EXISTS fsm_idempotency_keys_created ON fsm_idempotency_keys (created_at_micros);
