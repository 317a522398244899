-- Single-use tokens. Redeeming sets `used_at_micros` with a compare-and-set; the row stays as
-- the tombstone that tells a used token from a forged one until `keep_until_micros`, when
-- `purge` deletes it. Times are microseconds since the Unix epoch, by the database's clock.
CREATE TABLE IF NOT EXISTS fsm_tokens (
    scope             VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    token             CHAR(64)     CHARACTER SET ascii COLLATE ascii_bin     NOT NULL,
    expires_at_micros BIGINT       NOT NULL,
    keep_until_micros BIGINT       NOT NULL,
    used_at_micros    BIGINT,
    PRIMARY KEY (scope, token),
    INDEX fsm_tokens_keep_until (keep_until_micros)
) ENGINE = InnoDB;
