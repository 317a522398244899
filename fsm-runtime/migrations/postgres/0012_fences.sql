-- Fences: the highest fencing token each protected resource (an entity) has accepted. A write
-- carrying a lower token is refused, in the write's own transaction.
CREATE TABLE IF NOT EXISTS fsm_fences (
    resource TEXT   NOT NULL PRIMARY KEY,
    highest  BIGINT NOT NULL
);
