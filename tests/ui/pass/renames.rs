#![deny(warnings, missing_docs)]
//! `rename` and every `rename_all` rule, on states and events.

use fsm_runtime::StateMachine;

macro_rules! machine {
    ($name:ident, $event:ident, $rule:literal) => {
        /// A machine under one `rename_all` rule.
        #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
        #[state_machine(rename_all = $rule, event = $event)]
        pub enum $name {
            /// The first state.
            #[state(initial)]
            NewOrder,
            /// Renamed: `rename` wins over `rename_all`.
            #[transition(from = NewOrder, on = MarkInTransit)]
            #[state(rename = "on the road")]
            InTransit,
        }
    };
}

machine!(Lower, LowerEvent, "lowercase");
machine!(Upper, UpperEvent, "UPPERCASE");
machine!(Pascal, PascalEvent, "PascalCase");
machine!(Camel, CamelEvent, "camelCase");
machine!(Snake, SnakeEvent, "snake_case");
machine!(ScreamingSnake, ScreamingSnakeEvent, "SCREAMING_SNAKE_CASE");
machine!(Kebab, KebabEvent, "kebab-case");
machine!(ScreamingKebab, ScreamingKebabEvent, "SCREAMING-KEBAB-CASE");

/// No `rename_all`: names as written; `rename` and `initial` in one attribute.
#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plain {
    /// The first state.
    #[state(initial, rename = "fresh")]
    NewOrder,
    /// The second.
    #[transition(from = NewOrder, on = MarkInTransit)]
    InTransit,
}

fn check<M: StateMachine + std::fmt::Display + std::str::FromStr>(first: &str, event: &str) {
    assert_eq!(M::initial().as_str(), first);
    assert_eq!(M::event_name(M::EVENTS[0]), event);
    let second = M::STATES[1];
    assert_eq!(M::from_stored(second.as_str()), Ok(second));
    assert!(M::from_stored("in transit").is_err());
}

fn main() {
    check::<Lower>("neworder", "markintransit");
    check::<Upper>("NEWORDER", "MARKINTRANSIT");
    check::<Pascal>("NewOrder", "MarkInTransit");
    check::<Camel>("newOrder", "markInTransit");
    check::<Snake>("new_order", "mark_in_transit");
    check::<ScreamingSnake>("NEW_ORDER", "MARK_IN_TRANSIT");
    check::<Kebab>("new-order", "mark-in-transit");
    check::<ScreamingKebab>("NEW-ORDER", "MARK-IN-TRANSIT");
    check::<Plain>("fresh", "MarkInTransit");
    assert_eq!(Kebab::InTransit.as_str(), "on the road");
    assert_eq!("on the road".parse::<Snake>(), Ok(Snake::InTransit));
    assert_eq!(Plain::InTransit.as_str(), "InTransit");
    assert_eq!(KebabEvent::MarkInTransit.as_str(), "mark-in-transit");
}
