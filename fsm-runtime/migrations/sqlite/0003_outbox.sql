-- The transactional outbox: a message is written in the transaction of the transition that
-- produced it, and published by a relay. `claimed_until_micros` is the relay's lease on it.
CREATE TABLE IF NOT EXISTS fsm_outbox (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id           TEXT    NOT NULL UNIQUE,
    topic                TEXT    NOT NULL,
    message_key          TEXT,
    payload              TEXT    NOT NULL,
    created_at_micros    INTEGER NOT NULL,
    claimed_until_micros INTEGER NOT NULL DEFAULT 0,
    attempts             INTEGER NOT NULL DEFAULT 0,
    published_at_micros  INTEGER
);
CREATE INDEX IF NOT EXISTS fsm_outbox_pending ON fsm_outbox (id) WHERE published_at_micros IS NULL;
-- The inbox: the messages a consumer has processed, recorded in the consumer's transaction.
CREATE TABLE IF NOT EXISTS fsm_inbox (
    consumer            TEXT    NOT NULL,
    message_id          TEXT    NOT NULL,
    processed_at_micros INTEGER NOT NULL,
    PRIMARY KEY (consumer, message_id)
) WITHOUT ROWID;
