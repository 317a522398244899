-- A relay that claims one topic reads (and locks) only that topic's pending messages: relays
-- of other topics never skip them as locked. MySQL has no `CREATE INDEX IF NOT EXISTS`: the
-- migration ignores "duplicate key name" (1061) when the index exists.
CREATE INDEX fsm_outbox_topic_pending ON fsm_outbox (topic, published_at_micros, id);
