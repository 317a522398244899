-- Leases (distributed locks). A row is never deleted: releasing sets `expires_at_micros` to 0,
-- so `fence`, incremented by every acquisition, only grows. `nonce` identifies the acquisition
-- that wrote the row. Times are microseconds since the Unix epoch, by the database's clock.
CREATE TABLE IF NOT EXISTS fsm_leases (
    resource          TEXT   NOT NULL PRIMARY KEY,
    owner             TEXT   NOT NULL,
    fence             BIGINT NOT NULL,
    expires_at_micros BIGINT NOT NULL,
    nonce             TEXT   NOT NULL
);
