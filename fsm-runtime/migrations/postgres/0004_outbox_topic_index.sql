-- A relay that claims one topic reads (and, where it locks, locks) only that topic's pending
-- messages: relays of other topics never skip them as locked.
CREATE INDEX IF NOT EXISTS fsm_outbox_topic_pending ON fsm_outbox (topic, id) WHERE published_at_micros IS NULL;
