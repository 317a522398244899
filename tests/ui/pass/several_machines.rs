#![deny(warnings, missing_docs)]
//! Several machines in one module, and one in a child module used from outside it.

use fsm_runtime::StateMachine;

/// The first.
#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    /// Closed.
    #[state(initial)]
    #[transition(from = Open, on = Close)]
    Closed,
    /// Open.
    #[transition(from = Closed, on = Open)]
    Open,
}

/// The second, with an event named like one of the first's.
#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// Shut.
    #[state(initial)]
    Shut,
    /// Open.
    #[transition(from = Shut, on = Open)]
    Open,
}

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
enum Private {
    #[state(initial)]
    Only,
}

mod inner {
    //! A machine in a child module.
    use fsm_runtime::StateMachine;

    /// Visible outside its module, with its event enum.
    #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
    #[state_machine(event = Signal)]
    pub(crate) enum Lamp {
        /// Off.
        #[state(initial)]
        Off,
        /// On.
        #[transition(from = Off, on = SwitchOn)]
        On,
    }
}

fn name<M: StateMachine>() -> &'static str {
    M::MACHINE
}

fn main() {
    assert_eq!(Door::Closed.fire(DoorEvent::Open), Ok(Door::Open));
    assert_eq!(Window::Shut.fire(WindowEvent::Open), Ok(Window::Open));
    assert_eq!(inner::Lamp::Off.fire(inner::Signal::SwitchOn), Ok(inner::Lamp::On));
    assert_eq!(Private::initial(), Private::Only);
    assert_eq!(Private::EVENTS.len(), 0);
    assert_eq!(
        [name::<Door>(), name::<Window>(), name::<Private>(), name::<inner::Lamp>()],
        ["Door", "Window", "Private", "Lamp"]
    );
}
