-- Idempotency keys: one row per applied keyed request, with the request's fingerprint and the
-- stored outcome, written in the same transaction as the work.
CREATE TABLE IF NOT EXISTS fsm_idempotency_keys (
    source            VARCHAR(191) NOT NULL,
    seq               BIGINT       NOT NULL,
    fingerprint       VARCHAR(128) NOT NULL,
    outcome           MEDIUMTEXT   NOT NULL,
    created_at_micros BIGINT       NOT NULL,
    PRIMARY KEY (source, seq),
    INDEX fsm_idempotency_keys_created (created_at_micros)
) ENGINE = InnoDB;
