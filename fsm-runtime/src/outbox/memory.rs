//! [`MemoryOutbox`]: the outbox of the memory stores, a relay's source.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::clock::now_micros;
use crate::error::Error;
use crate::message::{OutboxMessage, PendingMessage};
use crate::outbox::{OutboxSource, OutboxStats};

/// A message in a memory outbox.
#[derive(Debug, Clone)]
struct OutboxRow {
    message: PendingMessage,
    claimed_until: i64,
    published: bool,
    created_at_micros: i64,
}

/// The outbox of the memory stores (see [`MemoryStore::outbox`](crate::MemoryStore::outbox)); a
/// cheap handle to share.
#[derive(Debug, Clone, Default)]
pub struct MemoryOutbox {
    rows: Arc<Mutex<Vec<OutboxRow>>>,
}

impl MemoryOutbox {
    /// Appends messages enqueued by an applied transaction, in order.
    pub(crate) fn append(&self, messages: Vec<(String, OutboxMessage)>) {
        let mut outbox = self.lock();
        for (message_id, message) in messages {
            let sequence = i64::try_from(outbox.len()).unwrap_or(i64::MAX) + 1;
            let OutboxMessage { topic, key, payload } = message;
            let message = PendingMessage { sequence, message_id, topic, key, payload, attempts: 0 };
            outbox.push(OutboxRow { message, claimed_until: 0, published: false, created_at_micros: now_micros() });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<OutboxRow>> {
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many messages were never published.
    pub fn unpublished(&self) -> usize {
        self.lock().iter().filter(|row| !row.published).count()
    }
}

impl OutboxSource for MemoryOutbox {
    async fn claim(&self, batch: usize, lease: Duration) -> Result<Vec<PendingMessage>, Error> {
        let now = now_micros();
        let until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        let mut outbox = self.lock();
        let claimable = outbox.iter_mut().filter(|row| !row.published && row.claimed_until < now);
        Ok(claimable
            .take(batch)
            .map(|row| {
                row.claimed_until = until;
                row.message.attempts += 1;
                row.message.clone()
            })
            .collect())
    }

    async fn mark_published(&self, sequence: i64) -> Result<(), Error> {
        if let Some(row) = self.lock().iter_mut().find(|row| row.message.sequence == sequence) {
            row.published = true;
        }
        Ok(())
    }

    async fn release(&self, sequence: i64) -> Result<(), Error> {
        if let Some(row) = self.lock().iter_mut().find(|row| row.message.sequence == sequence && !row.published) {
            row.claimed_until = 0;
        }
        Ok(())
    }

    async fn stats(&self) -> Result<OutboxStats, Error> {
        let outbox = self.lock();
        let pending = outbox.iter().filter(|row| !row.published);
        let (count, oldest) = pending.fold((0_i64, None), |(count, oldest): (i64, Option<i64>), row| {
            (count + 1, Some(oldest.map_or(row.created_at_micros, |at| at.min(row.created_at_micros))))
        });
        Ok(OutboxStats::new(count, oldest, 0))
    }
}
