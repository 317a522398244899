//! Unit tests of the code `#[derive(StateMachine)]` generates: every item of the trait, the
//! inherent `const` items, `FromStr`, `Display`, the event enum and the serde codecs.

use fsm_runtime::StateMachine;
use fsm_runtime::machine::Edge;
use fsm_runtime::machine::InvalidEvent;
use fsm_runtime::machine::UnknownState;
use fsm_runtime::mapping::TableMapping;

/// The machine of the design document, with a custom table mapping.
#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[state_machine(
    rename_all = "snake_case",
    event = OrderEvent,
    name = "order",
    table = "orders",
    id = "order_id",
    column = "status",
    version = "revision"
)]
pub enum OrderState {
    #[state(initial)]
    Created,
    #[transition(from = Created, on = Pay)]
    Paid,
    #[transition(from = Paid, on = Ship)]
    Shipped,
    #[transition(from = [Created, Paid], on = Cancel)]
    Cancelled,
}

/// `Close` has two targets: `Open -> Closed` and `Resolved -> Archived`; `Reopen` has no event
/// name on one edge.
#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
#[state_machine(rename_all = "SCREAMING-KEBAB-CASE")]
enum Ticket {
    #[state(initial)]
    Open,
    #[transition(from = Open, on = MarkResolved)]
    Resolved,
    #[transition(from = Open, on = Close)]
    Closed,
    #[transition(from = Resolved, on = Close)]
    #[state(terminal, rename = "archived")]
    Archived,
    #[transition(from = Closed)]
    ReOpened,
}

/// A machine that cycles on purpose.
#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
#[state_machine(cyclic = [Next])]
enum Light {
    #[state(initial)]
    #[transition(from = Yellow, on = Next)]
    Red,
    #[transition(from = Red, on = Next)]
    Green,
    #[transition(from = Green, on = Next)]
    Yellow,
}

/// One state, no transition, no event.
#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
enum Constant {
    #[state(initial)]
    Only,
}

/// The trait's view of a machine, so that the trait impl is tested apart from the inherent items.
fn initial_of<M: StateMachine>() -> M {
    M::initial()
}

fn as_str_of<M: StateMachine>(state: M) -> &'static str {
    M::as_str(state)
}

fn sources_of<M: StateMachine>(target: M) -> &'static [M] {
    M::sources(target)
}

fn can<M: StateMachine>(from: M, to: M) -> bool {
    M::can_transition(from, to)
}

fn terminal<M: StateMachine>(state: M) -> bool {
    M::is_terminal(state)
}

fn fire_of<M: StateMachine>(state: M, event: M::Event) -> Result<M, InvalidEvent> {
    M::fire(state, event)
}

#[test]
fn constants() {
    use OrderState::*;
    assert_eq!(OrderState::MACHINE, "order");
    assert_eq!(<OrderState as StateMachine>::STATES, &[Created, Paid, Shipped, Cancelled]);
    assert_eq!(OrderState::STATES, &[Created, Paid, Shipped, Cancelled]);
    assert_eq!(
        OrderState::TRANSITIONS,
        &[
            Edge { from: Created, to: Paid, event: Some(OrderEvent::Pay) },
            Edge { from: Paid, to: Shipped, event: Some(OrderEvent::Ship) },
            Edge { from: Created, to: Cancelled, event: Some(OrderEvent::Cancel) },
            Edge { from: Paid, to: Cancelled, event: Some(OrderEvent::Cancel) },
        ]
    );
    assert_eq!(OrderState::EVENTS, &[OrderEvent::Pay, OrderEvent::Ship, OrderEvent::Cancel]);
    assert_eq!(OrderState::MAPPING, TableMapping::from_static("orders", "order_id", "status", "revision"));
    assert_eq!(OrderState::MAPPING.validate(), Ok(()));
}

#[test]
fn default_names_and_mapping() {
    assert_eq!(Ticket::MACHINE, "Ticket");
    assert_eq!(Ticket::MAPPING, TableMapping::from_static("ticket", "id", "state", "version"));
    assert_eq!(Light::MAPPING.table, "light");
    assert_eq!(Constant::EVENTS, &[] as &[ConstantEvent]);
    assert_eq!(Constant::TRANSITIONS, &[]);
}

#[test]
fn mermaid() {
    let expected = "stateDiagram-v2
    [*] --> created
    created --> paid: pay
    paid --> shipped: ship
    created --> cancelled: cancel
    paid --> cancelled: cancel
    shipped --> [*]
    cancelled --> [*]
";
    assert_eq!(OrderState::MERMAID, expected);
    assert_eq!(<OrderState as StateMachine>::MERMAID, expected);

    // Names that are not plain words are aliased; edges without an event have no label.
    assert_eq!(
        Ticket::MERMAID,
        "stateDiagram-v2
    state \"RE-OPENED\" as s4
    [*] --> OPEN
    OPEN --> RESOLVED: MARK-RESOLVED
    OPEN --> CLOSED: CLOSE
    RESOLVED --> archived: CLOSE
    CLOSED --> s4
    archived --> [*]
    s4 --> [*]
"
    );
    assert_eq!(
        Light::MERMAID,
        "stateDiagram-v2
    [*] --> Red
    Yellow --> Red: Next
    Red --> Green: Next
    Green --> Yellow: Next
"
    );
    assert_eq!(Constant::MERMAID, "stateDiagram-v2\n    [*] --> Only\n    Only --> [*]\n");
}

#[test]
fn dot() {
    let expected = r#"digraph order {
    rankdir=LR;
    "created" [shape=doublecircle];
    "created" -> "paid" [label="pay"];
    "paid" -> "shipped" [label="ship"];
    "created" -> "cancelled" [label="cancel"];
    "paid" -> "cancelled" [label="cancel"];
    "shipped" [shape=box];
    "cancelled" [shape=box];
}
"#;
    assert_eq!(OrderState::DOT, expected);
    assert_eq!(<OrderState as StateMachine>::DOT, expected);
    assert_eq!(
        Ticket::DOT,
        r#"digraph Ticket {
    rankdir=LR;
    "OPEN" [shape=doublecircle];
    "OPEN" -> "RESOLVED" [label="MARK-RESOLVED"];
    "OPEN" -> "CLOSED" [label="CLOSE"];
    "RESOLVED" -> "archived" [label="CLOSE"];
    "CLOSED" -> "RE-OPENED";
    "archived" [shape=box];
    "RE-OPENED" [shape=box];
}
"#
    );
    assert_eq!(Constant::DOT, "digraph Constant {\n    rankdir=LR;\n    \"Only\" [shape=doublecircle];\n}\n");
}

#[test]
fn initial() {
    assert_eq!(OrderState::initial(), OrderState::Created);
    assert_eq!(initial_of::<OrderState>(), OrderState::Created);
    assert_eq!(initial_of::<Light>(), Light::Red);
    assert_eq!(initial_of::<Constant>(), Constant::Only);
}

#[test]
fn stored_names() {
    let names: Vec<_> = OrderState::STATES.iter().map(|state| state.as_str()).collect();
    assert_eq!(names, ["created", "paid", "shipped", "cancelled"]);
    let names: Vec<_> = Ticket::STATES.iter().map(|state| as_str_of(*state)).collect();
    assert_eq!(names, ["OPEN", "RESOLVED", "CLOSED", "archived", "RE-OPENED"]);
    assert_eq!(Light::Yellow.as_str(), "Yellow");
    assert_eq!(OrderState::Shipped.to_string(), "shipped");
    assert_eq!(format!("[{:>8}]", OrderState::Paid), "[    paid]");
}

#[test]
fn from_stored_and_from_str() {
    for state in Ticket::STATES {
        assert_eq!(Ticket::from_stored(state.as_str()), Ok(*state));
        assert_eq!(state.as_str().parse::<Ticket>(), Ok(*state));
    }
    let error = "Archived".parse::<Ticket>().unwrap_err();
    assert_eq!(
        error,
        UnknownState {
            machine: "Ticket",
            value: "Archived".into(),
            expected: "OPEN, RESOLVED, CLOSED, archived, RE-OPENED"
        }
    );
    assert_eq!(
        OrderState::from_stored("Paid").unwrap_err().to_string(),
        "`Paid` is not a state of order (expected one of: created, paid, shipped, cancelled)"
    );
    assert!(OrderState::from_stored("").is_err());
}

#[test]
fn sources() {
    use OrderState::*;
    assert_eq!(OrderState::sources(Created), &[]);
    assert_eq!(OrderState::sources(Paid), &[Created]);
    assert_eq!(OrderState::sources(Shipped), &[Paid]);
    assert_eq!(OrderState::sources(Cancelled), &[Created, Paid]);
    assert_eq!(sources_of(Cancelled), &[Created, Paid]);
    assert_eq!(sources_of(Light::Red), &[Light::Yellow]);
}

#[test]
fn can_transition_matches_the_table() {
    for &from in OrderState::STATES {
        for &to in OrderState::STATES {
            let edge = OrderState::TRANSITIONS.iter().any(|edge| edge.from == from && edge.to == to);
            assert_eq!(OrderState::can_transition(from, to), edge, "{from} -> {to}");
            assert_eq!(can(from, to), edge, "{from} -> {to}");
            assert_eq!(OrderState::sources(to).contains(&from), edge, "{from} -> {to}");
        }
    }
    assert!(!Constant::can_transition(Constant::Only, Constant::Only));
}

#[test]
fn is_terminal() {
    use OrderState::*;
    assert_eq!(
        OrderState::STATES.iter().map(|state| state.is_terminal()).collect::<Vec<_>>(),
        [false, false, true, true]
    );
    assert!(terminal(Cancelled) && !terminal(Created));
    assert!(Ticket::Archived.is_terminal() && Ticket::ReOpened.is_terminal() && !Ticket::Closed.is_terminal());
    assert!(!Light::STATES.iter().any(|state| state.is_terminal()));
    assert!(Constant::Only.is_terminal());
}

#[test]
fn fire() {
    use OrderState::*;
    assert_eq!(Created.fire(OrderEvent::Pay), Ok(Paid));
    assert_eq!(Paid.fire(OrderEvent::Ship), Ok(Shipped));
    assert_eq!(Created.fire(OrderEvent::Cancel), Ok(Cancelled));
    assert_eq!(fire_of(Paid, OrderEvent::Cancel), Ok(Cancelled));
    assert_eq!(
        Shipped.fire(OrderEvent::Cancel),
        Err(InvalidEvent { machine: "order", state: "shipped", event: "cancel" })
    );
    assert_eq!(
        fire_of(Created, OrderEvent::Ship).unwrap_err().to_string(),
        "order: event `ship` is not legal in state `created`"
    );
    assert_eq!(Ticket::Open.fire(TicketEvent::Close), Ok(Ticket::Closed));
    assert_eq!(Ticket::Resolved.fire(TicketEvent::Close), Ok(Ticket::Archived));
    assert_eq!(
        Ticket::Closed.fire(TicketEvent::Close),
        Err(InvalidEvent { machine: "Ticket", state: "CLOSED", event: "CLOSE" })
    );
    // Every (state, event) pair of the light has an edge.
    assert_eq!(Light::Yellow.fire(LightEvent::Next), Ok(Light::Red));
}

#[test]
fn events() {
    assert_eq!(OrderState::event_sources(OrderEvent::Cancel), &[OrderState::Created, OrderState::Paid]);
    assert_eq!(OrderState::event_targets(OrderEvent::Cancel), &[OrderState::Cancelled]);
    assert_eq!(OrderState::event_sources(OrderEvent::Ship), &[OrderState::Paid]);
    assert_eq!(OrderState::event_targets(OrderEvent::Ship), &[OrderState::Shipped]);
    assert_eq!(Ticket::event_sources(TicketEvent::Close), &[Ticket::Open, Ticket::Resolved]);
    assert_eq!(Ticket::event_targets(TicketEvent::Close), &[Ticket::Closed, Ticket::Archived]);
    assert_eq!(Ticket::EVENTS, &[TicketEvent::MarkResolved, TicketEvent::Close]);
    assert_eq!(Light::event_sources(LightEvent::Next), &[Light::Yellow, Light::Red, Light::Green]);
    assert_eq!(Light::event_targets(LightEvent::Next), &[Light::Red, Light::Green, Light::Yellow]);

    assert!(Light::event_is_cyclic(LightEvent::Next));
    assert!(!OrderState::EVENTS.iter().any(|event| OrderState::event_is_cyclic(*event)));

    assert_eq!(OrderState::event_name(OrderEvent::Pay), "pay");
    assert_eq!(Ticket::event_name(TicketEvent::MarkResolved), "MARK-RESOLVED");
    assert_eq!(TicketEvent::MarkResolved.as_str(), "MARK-RESOLVED");
    assert_eq!(TicketEvent::Close.to_string(), "CLOSE");
    assert_eq!(LightEvent::Next.to_string(), "Next");
    assert_eq!(format!("{:?}", OrderEvent::Pay), "Pay");
}

/// The inherent items are `const fn`s and `const`s, usable in `const` context.
#[test]
fn const_context() {
    const INITIAL: OrderState = OrderState::initial();
    const NAME: &str = OrderState::Cancelled.as_str();
    const CAN: bool = OrderState::can_transition(OrderState::Created, OrderState::Paid);
    const SOURCES: &[OrderState] = OrderState::sources(OrderState::Cancelled);
    const TERMINAL: bool = OrderState::Shipped.is_terminal();
    const FIRED: Result<OrderState, InvalidEvent> = OrderState::Created.fire(OrderEvent::Pay);
    const STATES: usize = OrderState::STATES.len();
    const EVENT: &str = OrderEvent::Cancel.as_str();
    const MERMAID_LEN: usize = OrderState::MERMAID.len();
    assert_eq!(INITIAL, OrderState::Created);
    assert_eq!(NAME, "cancelled");
    const { assert!(CAN && TERMINAL) };
    assert_eq!(SOURCES.len(), 2);
    assert_eq!(FIRED, Ok(OrderState::Paid));
    assert_eq!(STATES, 4);
    assert_eq!(EVENT, "cancel");
    assert_eq!(MERMAID_LEN, OrderState::MERMAID.len());
}

#[test]
fn serde_round_trip() {
    for &state in Ticket::STATES {
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(json, format!("\"{}\"", state.as_str()));
        assert_eq!(serde_json::from_str::<Ticket>(&json).unwrap(), state);
    }
    let states: Vec<OrderState> = serde_json::from_str(r#"["created", "cancelled"]"#).unwrap();
    assert_eq!(states, [OrderState::Created, OrderState::Cancelled]);

    let error = serde_json::from_str::<OrderState>("\"Created\"").unwrap_err().to_string();
    assert!(error.contains("`Created` is not a state of order"), "{error}");
    let error = serde_json::from_str::<OrderState>("3").unwrap_err().to_string();
    assert!(error.contains("a state of order"), "{error}");
}
