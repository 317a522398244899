//! The messages of the outbox: what an effect enqueues and what a relay publishes.

/// A message to publish when the transition it is enqueued with is applied.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    /// Where it goes (a topic, a queue, an exchange).
    pub topic: String,
    /// A partitioning or ordering key, if the broker has one.
    pub key: Option<String>,
    /// The body.
    pub payload: serde_json::Value,
}

impl OutboxMessage {
    /// A message for `topic` with no key.
    pub fn new(topic: impl Into<String>, payload: serde_json::Value) -> Self {
        Self { topic: topic.into(), key: None, payload }
    }

    /// The same message with a key.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
}

/// A stored message, as a relay hands it to the publisher.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingMessage {
    /// Its position in the outbox: messages are claimed in this order.
    pub sequence: i64,
    /// Its unique id, the same on every delivery attempt: consumers deduplicate on it.
    pub message_id: String,
    /// Where it goes.
    pub topic: String,
    /// Its key.
    pub key: Option<String>,
    /// Its body.
    pub payload: serde_json::Value,
    /// How many times it has been claimed, this time included (since it was last requeued).
    pub attempts: i64,
    /// The error of its last failed attempt, if one failed (truncated to
    /// [`MAX_ERROR_BYTES`](crate::outbox::MAX_ERROR_BYTES)).
    pub last_error: Option<String>,
}

/// A message parked as dead: it failed the relay's maximum of attempts. It stays in the outbox
/// until it is requeued ([`OutboxMaintenance::requeue`](crate::outbox::OutboxMaintenance::requeue)).
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The message, with its attempts and its last error.
    pub message: PendingMessage,
    /// When it was parked, in microseconds since the Unix epoch.
    pub dead_at_micros: i64,
}

/// A new message id.
pub(crate) fn new_message_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
