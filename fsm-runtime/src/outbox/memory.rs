//! [`MemoryOutbox`]: the outbox of the memory stores, a relay's source.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::clock::{micros_before_now, now_micros};
use crate::error::Error;
use crate::message::{DeadLetter, OutboxMessage, PendingMessage};
use crate::outbox::{NextAttempt, OutboxMaintenance, OutboxSource, OutboxStats};

/// A message in a memory outbox.
#[derive(Debug, Clone)]
struct OutboxRow {
    message: PendingMessage,
    claimed_until: i64,
    created_at_micros: i64,
    next_attempt_at: i64,
    published_at: Option<i64>,
    dead_at: Option<i64>,
}

impl OutboxRow {
    /// Neither published nor dead.
    fn is_live(&self) -> bool {
        self.published_at.is_none() && self.dead_at.is_none()
    }

    /// Live, not claimed and past its backoff at `now`.
    fn is_due(&self, now: i64) -> bool {
        self.is_live() && self.claimed_until < now && self.next_attempt_at <= now
    }

    /// Its topic and key, when it has a key (the messages its order is kept with).
    fn ordering_key(&self) -> Option<(String, String)> {
        let key = self.message.key.clone()?;
        Some((self.message.topic.clone(), key))
    }
}

/// The rows, in order, and the last sequence handed out (rows are purged, sequences never
/// reused).
#[derive(Debug, Default)]
struct Rows {
    rows: Vec<OutboxRow>,
    last_sequence: i64,
}

impl Rows {
    fn find(&mut self, sequence: i64) -> Option<&mut OutboxRow> {
        self.rows.iter_mut().find(|row| row.message.sequence == sequence)
    }
}

/// The outbox of the memory stores (see [`MemoryStore::outbox`](crate::MemoryStore::outbox)); a
/// cheap handle to share.
#[derive(Debug, Clone, Default)]
pub struct MemoryOutbox {
    rows: Arc<Mutex<Rows>>,
}

impl MemoryOutbox {
    /// Appends messages enqueued by an applied transaction, in order.
    pub(crate) fn append(&self, messages: Vec<(String, OutboxMessage)>) {
        let mut outbox = self.lock();
        for (message_id, message) in messages {
            outbox.last_sequence += 1;
            let sequence = outbox.last_sequence;
            let OutboxMessage { topic, key, payload } = message;
            let message = PendingMessage { sequence, message_id, topic, key, payload, attempts: 0, last_error: None };
            outbox.rows.push(OutboxRow {
                message,
                claimed_until: 0,
                next_attempt_at: 0,
                published_at: None,
                dead_at: None,
                created_at_micros: now_micros(),
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rows> {
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many messages were never published (the dead ones included).
    pub fn unpublished(&self) -> usize {
        self.lock().rows.iter().filter(|row| row.published_at.is_none()).count()
    }

    fn requeue_where(&self, mut which: impl FnMut(&PendingMessage) -> bool) -> u64 {
        let mut requeued = 0;
        for row in self.lock().rows.iter_mut().filter(|row| row.dead_at.is_some() && which(&row.message)) {
            row.dead_at = None;
            row.message.attempts = 0;
            row.next_attempt_at = 0;
            row.claimed_until = 0;
            requeued += 1;
        }
        requeued
    }
}

impl OutboxSource for MemoryOutbox {
    async fn claim(&self, batch: usize, lease: Duration) -> Result<Vec<PendingMessage>, Error> {
        let now = now_micros();
        let until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        let mut outbox = self.lock();
        // The topics and keys of the live messages seen so far: a later message of one waits.
        let mut earlier = HashSet::new();
        let mut claimed = Vec::new();
        for row in outbox.rows.iter_mut().filter(|row| row.is_live()) {
            let first_of_its_key = row.ordering_key().is_none_or(|key| earlier.insert(key));
            if first_of_its_key && claimed.len() < batch && row.is_due(now) {
                row.claimed_until = until;
                row.message.attempts += 1;
                claimed.push(row.message.clone());
            }
        }
        Ok(claimed)
    }

    async fn mark_published(&self, sequence: i64) -> Result<(), Error> {
        if let Some(row) = self.lock().find(sequence) {
            row.published_at = Some(now_micros());
        }
        Ok(())
    }

    async fn release(&self, sequence: i64) -> Result<(), Error> {
        if let Some(row) = self.lock().find(sequence).filter(|row| row.published_at.is_none()) {
            row.claimed_until = 0;
        }
        Ok(())
    }

    async fn stats(&self) -> Result<OutboxStats, Error> {
        let outbox = self.lock();
        let pending = outbox.rows.iter().filter(|row| row.is_live());
        let (count, oldest) = pending.fold((0_i64, None), |(count, oldest): (i64, Option<i64>), row| {
            (count + 1, Some(oldest.map_or(row.created_at_micros, |at| at.min(row.created_at_micros))))
        });
        let dead = outbox.rows.iter().filter(|row| row.dead_at.is_some()).count();
        Ok(OutboxStats::new(count, oldest, i64::try_from(dead).unwrap_or(i64::MAX)))
    }

    async fn fail(&self, sequence: i64, error: &str, next: NextAttempt) -> Result<(), Error> {
        if let Some(row) = self.lock().find(sequence).filter(|row| row.published_at.is_none()) {
            row.claimed_until = 0;
            row.message.last_error = Some(error.to_owned());
            match next {
                NextAttempt::At(at) => row.next_attempt_at = at,
                NextAttempt::Dead => row.dead_at = Some(now_micros()),
            }
        }
        Ok(())
    }
}

impl OutboxMaintenance for MemoryOutbox {
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, Error> {
        let outbox = self.lock();
        let dead = outbox.rows.iter().filter_map(|row| Some((row, row.dead_at?)));
        Ok(dead
            .take(limit)
            .map(|(row, dead_at_micros)| DeadLetter { message: row.message.clone(), dead_at_micros })
            .collect())
    }

    async fn requeue(&self, message_id: &str) -> Result<bool, Error> {
        Ok(self.requeue_where(|message| message.message_id == message_id) > 0)
    }

    async fn requeue_all_dead(&self) -> Result<u64, Error> {
        Ok(self.requeue_where(|_| true))
    }

    async fn purge_published(&self, older_than: Duration) -> Result<u64, Error> {
        let cutoff = micros_before_now(older_than);
        let mut outbox = self.lock();
        let before = outbox.rows.len();
        outbox.rows.retain(|row| row.published_at.is_none_or(|at| at > cutoff));
        Ok(u64::try_from(before - outbox.rows.len()).unwrap_or(u64::MAX))
    }
}
