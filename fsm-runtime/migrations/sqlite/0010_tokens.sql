-- Single-use tokens. Redeeming sets `used_at_micros` with a compare-and-set; the row stays as
-- the tombstone that tells a used token from a forged one until `keep_until_micros`, when
-- `purge` deletes it. Times are microseconds since the Unix epoch, by the database's clock.
CREATE TABLE IF NOT EXISTS fsm_tokens (
    scope             TEXT    NOT NULL,
    token             TEXT    NOT NULL,
    expires_at_micros INTEGER NOT NULL,
    keep_until_micros INTEGER NOT NULL,
    used_at_micros    INTEGER,
    PRIMARY KEY (scope, token)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fsm_tokens_keep_until ON fsm_tokens (keep_until_micros);
