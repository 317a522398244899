use fsm_runtime::StateMachine;

// The machine is rejected, but the code using it reports nothing more: the event enum and the
// impls are still emitted.
#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
#[state_machine(event = Ev)]
enum Order {
    #[state(initial)]
    Created,
    #[transition(from = Created, on = Pay)]
    #[transition(from = Created, on = Pay)]
    Paid,
}

fn uses<M: StateMachine>() -> &'static str {
    M::MACHINE
}

fn main() {
    let state = Order::initial();
    let _ = state.fire(Ev::Pay);
    let _ = Order::can_transition(state, Order::Paid);
    let _ = "paid".parse::<Order>();
    let _ = Order::MERMAID;
    let _ = uses::<Order>();
    println!("{state} {}", Ev::Pay);
}
