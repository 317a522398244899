-- The transactional outbox: a message is written in the transaction of the transition that
-- produced it, and published by a relay. `claimed_until_micros` is the relay's lease on it.
CREATE TABLE IF NOT EXISTS fsm_outbox (
    id                   BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    message_id           VARCHAR(64)  NOT NULL UNIQUE,
    topic                VARCHAR(191) NOT NULL,
    message_key          VARCHAR(191),
    payload              MEDIUMTEXT   NOT NULL,
    created_at_micros    BIGINT       NOT NULL,
    claimed_until_micros BIGINT       NOT NULL DEFAULT 0,
    attempts             BIGINT       NOT NULL DEFAULT 0,
    published_at_micros  BIGINT,
    INDEX fsm_outbox_pending (published_at_micros, id)
) ENGINE = InnoDB;
-- The inbox: the messages a consumer has processed, recorded in the consumer's transaction.
CREATE TABLE IF NOT EXISTS fsm_inbox (
    consumer            VARCHAR(191) NOT NULL,
    message_id          VARCHAR(64)  NOT NULL,
    processed_at_micros BIGINT       NOT NULL,
    PRIMARY KEY (consumer, message_id)
) ENGINE = InnoDB;
