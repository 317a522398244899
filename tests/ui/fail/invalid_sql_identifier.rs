use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
#[state_machine(
    table = "orders; DROP TABLE users",
    id = "1id",
    column = "state-name",
    version = "a_very_long_version_column_name_that_does_not_fit_in_postgresql_"
)]
enum Order {
    #[state(initial)]
    Created,
    #[transition(from = Created)]
    Paid,
}

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
enum État {
    #[state(initial)]
    Ouvert,
}

fn main() {}
