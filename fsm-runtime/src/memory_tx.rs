//! [`MemoryTx`]: what an effect or a keyed operation of the memory stores works in.

use crate::error::BoxError;
use crate::message::{OutboxMessage, new_message_id};
use crate::outbox::Outbox;
use crate::scheduled::{Schedule, Timer};
use crate::transition::Transition;

/// What an effect or a keyed operation receives from a [`MemoryStore`](crate::MemoryStore).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MemoryTx {
    pub(crate) transition: Option<Transition>,
    /// Messages enqueued by the effects, written to the store's outbox with the transition.
    pub(crate) outbox: Vec<(String, OutboxMessage)>,
    /// Timers scheduled by the effects, written to the store's timers with the transition.
    pub(crate) timers: Vec<(String, Timer)>,
}

impl MemoryTx {
    /// The messages the effects enqueued, for the outbox once the transaction is applied.
    pub(crate) fn take_outbox(&mut self) -> Vec<(String, OutboxMessage)> {
        std::mem::take(&mut self.outbox)
    }

    /// The timers the effects scheduled, for the timers once the transaction is applied.
    pub(crate) fn take_timers(&mut self) -> Vec<(String, Timer)> {
        std::mem::take(&mut self.timers)
    }

    /// The transition being applied, for an effect (`None` in a keyed operation).
    pub fn transition(&self) -> Option<&Transition> {
        self.transition.as_ref()
    }
}

impl Outbox for MemoryTx {
    async fn enqueue(&mut self, message: OutboxMessage) -> Result<String, BoxError> {
        let id = new_message_id();
        self.outbox.push((id.clone(), message));
        Ok(id)
    }
}

impl Schedule for MemoryTx {
    async fn schedule(&mut self, timer: Timer) -> Result<String, BoxError> {
        let id = new_message_id();
        self.timers.push((id.clone(), timer));
        Ok(id)
    }

    fn applying(&self) -> Option<&Transition> {
        self.transition.as_ref()
    }
}
