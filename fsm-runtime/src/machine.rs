//! The [`StateMachine`] trait that `#[derive(StateMachine)]` implements, and its edge type.

use std::fmt::Debug;

pub use crate::machine_error::{InvalidEvent, UnknownState};
use crate::mapping::TableMapping;

/// One edge of a machine's transition table: `from --event--> to`.
///
/// The derive emits every edge of a machine as a `const` slice, [`StateMachine::TRANSITIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge<S: StateMachine> {
    /// The state the edge leaves.
    pub from: S,
    /// The state the edge reaches.
    pub to: S,
    /// The event that fires the edge, when the transition names one (`on = Event`).
    pub event: Option<S::Event>,
}

/// A finite state machine whose states are the variants of a unit-only enum.
///
/// Implemented by `#[derive(StateMachine)]`; every method is a `match` or a `const` slice, so
/// nothing is allocated and nothing is built at run time. The stores of this crate persist a
/// state by its stored name ([`StateMachine::as_str`]) and move it with a compare-and-set on the
/// legal sources of the target ([`StateMachine::sources`]).
///
/// ```
/// use fsm_runtime::StateMachine;
///
/// #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
/// #[state_machine(rename_all = "snake_case", event = DoorEvent)]
/// enum Door {
///     #[state(initial)]
///     Closed,
///     #[transition(from = Closed, on = Open)]
///     Opened,
///     #[transition(from = [Closed, Opened], on = Lock)]
///     Locked,
/// }
///
/// assert_eq!(Door::initial(), Door::Closed);
/// assert!(Door::can_transition(Door::Closed, Door::Opened));
/// assert_eq!(Door::sources(Door::Locked), &[Door::Closed, Door::Opened]);
/// assert_eq!(Door::Closed.fire(DoorEvent::Open), Ok(Door::Opened));
/// assert!(Door::Locked.fire(DoorEvent::Open).is_err());
/// assert_eq!(Door::Locked.as_str(), "locked");
/// assert_eq!("opened".parse::<Door>(), Ok(Door::Opened));
/// assert!(Door::Locked.is_terminal());
/// ```
pub trait StateMachine: Copy + Eq + Debug + Send + Sync + 'static {
    /// The events of the machine (the generated event enum).
    type Event: Copy + Eq + Debug + Send + Sync + 'static;

    /// The machine's name, as recorded in the history table and shown in errors.
    const MACHINE: &'static str;
    /// Every state, in declaration order.
    const STATES: &'static [Self];
    /// The in-flight states (`#[state(in_flight)]`), in declaration order: an entity in one of
    /// them is waiting for the result of a call to an outside service, which a transition out of
    /// the state records. A recovery worker looks for entities stuck in these states.
    ///
    /// The derive checks that each of them is entered by a transition and left by one, and is
    /// neither initial nor terminal. Empty by default, for machines implemented by hand.
    const IN_FLIGHT: &'static [Self] = &[];
    /// Every edge of the transition table, in declaration order.
    const TRANSITIONS: &'static [Edge<Self>];
    /// Every event, in order of first use.
    const EVENTS: &'static [Self::Event];
    /// The entity table this machine is persisted in, as declared in the derive.
    const MAPPING: TableMapping;
    /// A Mermaid `stateDiagram-v2` rendering of the machine.
    const MERMAID: &'static str;
    /// A Graphviz DOT rendering of the machine.
    const DOT: &'static str;

    /// The state every new entity starts in (`#[state(initial)]`).
    fn initial() -> Self;

    /// The name a state is stored under (honours `rename` and `rename_all`).
    fn as_str(self) -> &'static str;

    /// The state stored under `name`, or a typed error naming the machine and the value.
    fn from_stored(name: &str) -> Result<Self, UnknownState>;

    /// The legal sources of `target`: the states from which a transition to it is allowed.
    fn sources(target: Self) -> &'static [Self];

    /// Whether the table has an edge `from -> to`.
    fn can_transition(from: Self, to: Self) -> bool;

    /// Whether no edge leaves this state.
    fn is_terminal(self) -> bool;

    /// The state `event` leads to from `self`, or a typed error when no such edge exists.
    fn fire(self, event: Self::Event) -> Result<Self, InvalidEvent>;

    /// The states from which `event` is legal.
    fn event_sources(event: Self::Event) -> &'static [Self];

    /// The states `event` leads to, one per source, without repeats, in declaration order.
    fn event_targets(event: Self::Event) -> &'static [Self];

    /// Whether `event` was declared cyclic (`#[state_machine(cyclic = [Event])]`): one of its
    /// targets is also one of its sources, like a traffic light's `Next`, so a replay cannot be
    /// told from a fresh request. Firing it is replay-safe only with an idempotency key or an
    /// observed-state compare-and-set; the derive rejects such an event unless it is declared so.
    fn event_is_cyclic(event: Self::Event) -> bool;

    /// The stored name of `event`, as recorded in the history table.
    fn event_name(event: Self::Event) -> &'static str;

    /// Whether `target` is declared strict (`#[transition(from = A, on = Capture, strict)]`):
    /// a request that finds the entity already there, reached by another request, is
    /// [`Error::ReachedByAnotherRequest`](crate::Error::ReachedByAnotherRequest) instead of a
    /// no-op. A replay of the same request (same idempotency key) is still a
    /// [`Outcome::Replayed`](crate::Outcome::Replayed).
    fn is_strict(target: Self) -> bool {
        let _ = target;
        false
    }

    /// Whether this state is in flight (one of [`StateMachine::IN_FLIGHT`], declared with
    /// `#[state(in_flight)]`): the call to an outside service it stands for may be under way, and
    /// its result is not recorded yet.
    ///
    /// ```
    /// use fsm_runtime::StateMachine;
    ///
    /// #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
    /// #[state_machine(rename_all = "snake_case", event = PaymentEvent)]
    /// enum Payment {
    ///     #[state(initial)]
    ///     Authorized,
    ///     #[state(in_flight)]
    ///     #[transition(from = Authorized, on = Capture)]
    ///     Capturing,
    ///     #[transition(from = Capturing, on = Confirm)]
    ///     Captured,
    ///     #[transition(from = Capturing, on = Decline)]
    ///     Declined,
    /// }
    ///
    /// assert_eq!(<Payment as StateMachine>::IN_FLIGHT, &[Payment::Capturing]);
    /// assert_eq!(Payment::IN_FLIGHT, &[Payment::Capturing]); // the inherent mirror, no import needed
    /// assert!(Payment::Capturing.is_in_flight());
    /// assert!(!Payment::Authorized.is_in_flight());
    /// assert!(!Payment::Captured.is_in_flight() && !Payment::Declined.is_in_flight());
    /// let stuck: Vec<&str> = Payment::IN_FLIGHT.iter().map(|state| state.as_str()).collect();
    /// assert_eq!(stuck, ["capturing"]); // the stored names a recovery worker queries for
    /// ```
    fn is_in_flight(self) -> bool {
        Self::IN_FLIGHT.contains(&self)
    }
}
