#![deny(warnings)]
//! A 64-state machine, written out: a chain of 63 steps and one shortcut.

use fsm_runtime::StateMachine;

#[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
#[state_machine(rename_all = "snake_case")]
enum Big {
    #[state(initial)]
    S00,
    #[transition(from = S00, on = Step01)]
    S01,
    #[transition(from = S01, on = Step02)]
    S02,
    #[transition(from = S02, on = Step03)]
    S03,
    #[transition(from = S03, on = Step04)]
    S04,
    #[transition(from = S04, on = Step05)]
    S05,
    #[transition(from = S05, on = Step06)]
    S06,
    #[transition(from = S06, on = Step07)]
    S07,
    #[transition(from = S07, on = Step08)]
    S08,
    #[transition(from = S08, on = Step09)]
    S09,
    #[transition(from = S09, on = Step10)]
    S10,
    #[transition(from = S10, on = Step11)]
    S11,
    #[transition(from = S11, on = Step12)]
    S12,
    #[transition(from = S12, on = Step13)]
    S13,
    #[transition(from = S13, on = Step14)]
    S14,
    #[transition(from = S14, on = Step15)]
    S15,
    #[transition(from = S15, on = Step16)]
    S16,
    #[transition(from = S16, on = Step17)]
    S17,
    #[transition(from = S17, on = Step18)]
    S18,
    #[transition(from = S18, on = Step19)]
    S19,
    #[transition(from = S19, on = Step20)]
    S20,
    #[transition(from = S20, on = Step21)]
    S21,
    #[transition(from = S21, on = Step22)]
    S22,
    #[transition(from = S22, on = Step23)]
    S23,
    #[transition(from = S23, on = Step24)]
    S24,
    #[transition(from = S24, on = Step25)]
    S25,
    #[transition(from = S25, on = Step26)]
    S26,
    #[transition(from = S26, on = Step27)]
    S27,
    #[transition(from = S27, on = Step28)]
    S28,
    #[transition(from = S28, on = Step29)]
    S29,
    #[transition(from = S29, on = Step30)]
    S30,
    #[transition(from = S30, on = Step31)]
    S31,
    #[transition(from = S31, on = Step32)]
    S32,
    #[transition(from = S32, on = Step33)]
    S33,
    #[transition(from = S33, on = Step34)]
    S34,
    #[transition(from = S34, on = Step35)]
    S35,
    #[transition(from = S35, on = Step36)]
    S36,
    #[transition(from = S36, on = Step37)]
    S37,
    #[transition(from = S37, on = Step38)]
    S38,
    #[transition(from = S38, on = Step39)]
    S39,
    #[transition(from = S39, on = Step40)]
    S40,
    #[transition(from = S40, on = Step41)]
    S41,
    #[transition(from = S41, on = Step42)]
    S42,
    #[transition(from = S42, on = Step43)]
    S43,
    #[transition(from = S43, on = Step44)]
    S44,
    #[transition(from = S44, on = Step45)]
    S45,
    #[transition(from = S45, on = Step46)]
    S46,
    #[transition(from = S46, on = Step47)]
    S47,
    #[transition(from = S47, on = Step48)]
    S48,
    #[transition(from = S48, on = Step49)]
    S49,
    #[transition(from = S49, on = Step50)]
    S50,
    #[transition(from = S50, on = Step51)]
    S51,
    #[transition(from = S51, on = Step52)]
    S52,
    #[transition(from = S52, on = Step53)]
    S53,
    #[transition(from = S53, on = Step54)]
    S54,
    #[transition(from = S54, on = Step55)]
    S55,
    #[transition(from = S55, on = Step56)]
    S56,
    #[transition(from = S56, on = Step57)]
    S57,
    #[transition(from = S57, on = Step58)]
    S58,
    #[transition(from = S58, on = Step59)]
    S59,
    #[transition(from = S59, on = Step60)]
    S60,
    #[transition(from = S60, on = Step61)]
    S61,
    #[transition(from = S61, on = Step62)]
    S62,
    #[transition(from = S62, on = Step63)]
    #[transition(from = [S10, S20], on = Skip)]
    S63,
}

fn main() {
    assert_eq!(Big::STATES.len(), 64);
    assert_eq!(Big::TRANSITIONS.len(), 65);
    assert_eq!(Big::EVENTS.len(), 64);
    assert_eq!(Big::S62.fire(BigEvent::Step63), Ok(Big::S63));
    assert_eq!(Big::S20.fire(BigEvent::Skip), Ok(Big::S63));
    assert!(Big::S00.fire(BigEvent::Skip).is_err());
    assert_eq!(Big::sources(Big::S63), &[Big::S62, Big::S10, Big::S20]);
    assert_eq!(Big::S41.as_str(), "s41");
    assert_eq!("s63".parse::<Big>(), Ok(Big::S63));
    assert!(Big::S63.is_terminal() && !Big::S62.is_terminal());
    for pair in Big::STATES.windows(2) {
        assert!(Big::can_transition(pair[0], pair[1]));
        assert!(!Big::can_transition(pair[1], pair[0]));
    }
    assert_eq!(Big::MERMAID.lines().count(), 1 + 1 + 65 + 1);
}
