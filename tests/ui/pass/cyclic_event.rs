#![deny(warnings)]
//! A machine that cycles on purpose opts out of the replay check per event.

use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
#[state_machine(rename_all = "snake_case", cyclic = [Next, Power])]
enum Light {
    #[state(initial)]
    #[transition(from = Yellow, on = Next)]
    Red,
    #[transition(from = Red, on = Next)]
    Green,
    #[transition(from = Green, on = Next)]
    Yellow,
    #[transition(from = [Red, Green, Yellow], on = Fault)]
    #[transition(from = Off, on = Power)]
    Blinking,
    #[transition(from = Blinking, on = Power)]
    Off,
}

fn main() {
    assert!(Light::event_is_cyclic(LightEvent::Next));
    assert!(Light::event_is_cyclic(LightEvent::Power));
    assert!(!Light::event_is_cyclic(LightEvent::Fault));
    assert_eq!(Light::Yellow.fire(LightEvent::Next), Ok(Light::Red));
    assert_eq!(Light::Off.fire(LightEvent::Power), Ok(Light::Blinking));
    assert_eq!(Light::event_targets(LightEvent::Next), &[Light::Red, Light::Green, Light::Yellow]);
    assert_eq!(Light::event_targets(LightEvent::Power), &[Light::Blinking, Light::Off]);
    assert!(!Light::STATES.iter().any(|state| state.is_terminal()));
}
