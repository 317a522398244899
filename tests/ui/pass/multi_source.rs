#![deny(warnings)]
//! `from = [A, B]` lists, several `transition` attributes on one variant, an edge without event.

use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
#[state_machine(rename_all = "snake_case")]
enum Review {
    #[state(initial)]
    Draft,
    #[transition(from = Draft, on = Submit)]
    Submitted,
    #[transition(from = Submitted, on = Approve)]
    Approved,
    #[transition(from = [Draft, Submitted], on = Withdraw)]
    #[transition(from = Approved, on = Revoke)]
    #[transition(from = Rejected)]
    Withdrawn,
    #[transition(from = Submitted, on = Reject)]
    Rejected,
}

fn main() {
    use Review::*;
    assert_eq!(Review::sources(Withdrawn), &[Draft, Submitted, Approved, Rejected]);
    assert_eq!(Review::event_sources(ReviewEvent::Withdraw), &[Draft, Submitted]);
    assert_eq!(Approved.fire(ReviewEvent::Revoke), Ok(Withdrawn));
    assert!(Review::can_transition(Rejected, Withdrawn));
    assert!(Review::TRANSITIONS.iter().any(|edge| edge.from == Rejected && edge.event.is_none()));
    assert!(Withdrawn.is_terminal());
    assert!(!Rejected.is_terminal());
    assert_eq!(
        Review::EVENTS,
        &[ReviewEvent::Submit, ReviewEvent::Approve, ReviewEvent::Withdraw, ReviewEvent::Revoke, ReviewEvent::Reject]
    );
}
