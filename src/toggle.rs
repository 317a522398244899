//! The machine of the load harnesses (`fsm-load`, `fsm-chaos`): two states and a transition each
//! way, so that every move can apply.

use fsm_runtime::StateMachine;

/// Two states, `a` and `b`, and a move each way. Its table is `bench_orders`; `fsm-chaos`
/// maps it onto `chaos_toggle`.
#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
#[state_machine(name = "BenchToggle", rename_all = "snake_case", table = "bench_orders")]
pub enum Toggle {
    /// The initial state.
    #[state(initial)]
    #[transition(from = B)]
    A,
    /// The other one.
    #[transition(from = A)]
    B,
}

impl Toggle {
    /// The state a move from `self` goes to.
    ///
    /// ```
    /// use fsm_suite::toggle::Toggle;
    /// assert_eq!(Toggle::A.other(), Toggle::B);
    /// assert_eq!(Toggle::of_code(Toggle::B.code()), Toggle::B);
    /// ```
    pub fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }

    /// A byte for an atomic (`a` 0, `b` 1).
    pub fn code(self) -> u8 {
        match self {
            Self::A => 0,
            Self::B => 1,
        }
    }

    /// The state of [`Toggle::code`].
    pub fn of_code(code: u8) -> Self {
        if code == 0 { Self::A } else { Self::B }
    }
}
