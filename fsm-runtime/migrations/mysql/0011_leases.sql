-- Leases (distributed locks). A row is never deleted: releasing sets `expires_at_micros` to 0,
-- so `fence`, incremented by every acquisition, only grows. `nonce` identifies the acquisition
-- that wrote the row. Times are microseconds since the Unix epoch, by the database's clock.
CREATE TABLE IF NOT EXISTS fsm_leases (
    resource          VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    owner             VARCHAR(191) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    fence             BIGINT       NOT NULL,
    expires_at_micros BIGINT       NOT NULL,
    nonce             CHAR(32)     CHARACTER SET ascii COLLATE ascii_bin     NOT NULL
) ENGINE = InnoDB;
