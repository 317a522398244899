-- Text in the runtime's tables compares byte for byte, as on SQLite and PostgreSQL. The tables
-- of 0001-0003 took the server's default collation, which on MySQL and MariaDB ignores letter
-- case and trailing spaces: idempotency keys `Web#1` and `web#1` were one key (a replay of
-- another request), and text entity ids `A-1` and `a-1` shared their history's primary key.
-- `{binary_collation}` is the server's binary collation that does not pad (trailing spaces
-- count): `utf8mb4_nopad_bin` on MariaDB, `utf8mb4_0900_bin` on MySQL 8, else `utf8mb4_bin`.
ALTER TABLE fsm_history CONVERT TO CHARACTER SET utf8mb4 COLLATE {binary_collation};
ALTER TABLE fsm_idempotency_keys CONVERT TO CHARACTER SET utf8mb4 COLLATE {binary_collation};
ALTER TABLE fsm_outbox CONVERT TO CHARACTER SET utf8mb4 COLLATE {binary_collation};
ALTER TABLE fsm_inbox CONVERT TO CHARACTER SET utf8mb4 COLLATE {binary_collation};
