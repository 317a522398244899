//! [`Timer`]: an event to fire at an entity, and [`Due`]: when.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::entity_id::EntityId;
use crate::machine::StateMachine;

/// When a timer is due: at a time, or a delay after it is scheduled (by the system's clock).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use fsm_runtime::timer::Due;
/// assert_eq!(Due::from(Duration::from_secs(1)).at_micros(5), 1_000_005);
/// assert_eq!(Due::from(UNIX_EPOCH + Duration::from_secs(2)).at_micros(5), 2_000_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// At this time.
    At(SystemTime),
    /// This long after the timer is scheduled.
    After(Duration),
}

impl Due {
    /// The due time in microseconds since the Unix epoch, for a timer scheduled at `now`.
    pub fn at_micros(self, now: i64) -> i64 {
        match self {
            Self::At(at) => at.duration_since(UNIX_EPOCH).map_or(0, micros_of),
            Self::After(delay) => now.saturating_add(micros_of(delay)),
        }
    }
}

fn micros_of(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

impl From<Duration> for Due {
    fn from(delay: Duration) -> Self {
        Self::After(delay)
    }
}

impl From<SystemTime> for Due {
    fn from(at: SystemTime) -> Self {
        Self::At(at)
    }
}

/// An event to fire at an entity when it is due: what [`Schedule::schedule`](crate::timer::Schedule::schedule)
/// writes. A scheduler of the machine on the entity's table fires it.
///
/// ```
/// use std::time::Duration;
/// use fsm_runtime::timer::Timer;
/// # #[derive(fsm_runtime::StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
/// # #[state_machine(event = HoldEvent, table = "holds")]
/// # enum Hold { #[state(initial)] Placed, #[transition(from = Placed, on = Expire)] Expired }
/// let timer = Timer::fire::<Hold>(7, HoldEvent::Expire, Duration::from_secs(60));
/// assert_eq!((timer.machine(), timer.table(), timer.event()), ("Hold", "holds", "Expire"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub(crate) machine: &'static str,
    pub(crate) table: String,
    pub(crate) entity: EntityId,
    pub(crate) event: &'static str,
    pub(crate) due: Due,
}

impl Timer {
    /// Fire `event` of machine `M` at entity `id` of `M`'s table (as declared in the derive)
    /// when `due`.
    pub fn fire<M: StateMachine>(id: impl Into<EntityId>, event: M::Event, due: impl Into<Due>) -> Self {
        Self {
            machine: M::MACHINE,
            table: M::MAPPING.table.to_string(),
            entity: id.into(),
            event: M::event_name(event),
            due: due.into(),
        }
    }

    /// The same timer for the entity table `table` (a store built with another mapping).
    pub fn on_table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// The machine.
    pub fn machine(&self) -> &'static str {
        self.machine
    }

    /// The entity table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The entity.
    pub fn entity(&self) -> &EntityId {
        &self.entity
    }

    /// The stored name of the event.
    pub fn event(&self) -> &'static str {
        self.event
    }

    /// When it is due.
    pub fn due(&self) -> Due {
        self.due
    }
}
