#![deny(warnings, missing_docs)]
//! The generated code is hygienic: every path it emits goes through `::fsm_runtime::__private`,
//! so that it compiles in a module without the prelude, and in a module whose items shadow the
//! names it could have used (`core`, `std`, `Option`, `Result`, `Some`, `Ok`, `str`, `bool`,
//! `fmt`, `StateMachine`, `TableMapping`, `Edge`, `matches!`, ...).

/// No prelude at all: not even `Clone`, `Option` or `Result` are in scope.
#[no_implicit_prelude]
pub mod no_prelude {
    /// A document under review: events, `rename`, `rename_all` and a table mapping.
    #[derive(
        ::fsm_runtime::StateMachine,
        ::core::clone::Clone,
        ::core::marker::Copy,
        ::core::fmt::Debug,
        ::core::cmp::PartialEq,
        ::core::cmp::Eq,
    )]
    #[state_machine(
        rename_all = "kebab-case",
        event = DocumentEvent,
        name = "document",
        table = "documents",
        id = "document_id",
        column = "phase",
        version = "rev"
    )]
    pub enum Document {
        /// The first state.
        #[state(initial)]
        Draft,
        /// Renamed: `rename` wins over `rename_all`.
        #[transition(from = Draft, on = SubmitForReview)]
        #[state(rename = "in review")]
        InReview,
        /// Terminal.
        #[transition(from = InReview, on = Approve)]
        Published,
        /// Terminal, from two sources.
        #[transition(from = [Draft, InReview], on = Withdraw)]
        Withdrawn,
    }

    /// Uses the machine through `::fsm_runtime::StateMachine`, still without a prelude.
    pub fn exercise() {
        use ::core::result::Result::{Err, Ok};

        ::core::assert_eq!(<Document as ::fsm_runtime::StateMachine>::initial(), Document::Draft);
        ::core::assert_eq!(::fsm_runtime::StateMachine::as_str(Document::InReview), "in review");
        ::core::assert_eq!(<Document as ::fsm_runtime::StateMachine>::from_stored("in review"), Ok(Document::InReview));
        ::core::assert!(<Document as ::fsm_runtime::StateMachine>::from_stored("In Review").is_err());
        ::core::assert_eq!(
            ::fsm_runtime::StateMachine::fire(Document::Draft, DocumentEvent::SubmitForReview),
            Ok(Document::InReview)
        );
        ::core::assert!(::core::matches!(
            ::fsm_runtime::StateMachine::fire(Document::Published, DocumentEvent::Withdraw),
            Err(::fsm_runtime::machine::InvalidEvent { machine: "document", state: "published", event: "withdraw" })
        ));
        ::core::assert_eq!(
            <Document as ::fsm_runtime::StateMachine>::event_sources(DocumentEvent::Withdraw),
            &[Document::Draft, Document::InReview]
        );
        ::core::assert_eq!(
            <Document as ::fsm_runtime::StateMachine>::event_name(DocumentEvent::SubmitForReview),
            "submit-for-review"
        );
        ::core::assert!(::fsm_runtime::StateMachine::is_terminal(Document::Published));
        ::core::assert!(<Document as ::fsm_runtime::StateMachine>::can_transition(
            Document::Draft,
            Document::Withdrawn
        ));
        ::core::assert_eq!(<Document as ::fsm_runtime::StateMachine>::TRANSITIONS.len(), 4);
        let mapping = <Document as ::fsm_runtime::StateMachine>::MAPPING;
        ::core::assert_eq!(
            (&*mapping.table, &*mapping.id, &*mapping.state, &*mapping.version),
            ("documents", "document_id", "phase", "rev")
        );
        ::core::assert_eq!(<Document as ::core::str::FromStr>::from_str("withdrawn"), Ok(Document::Withdrawn));
    }
}

/// Items that shadow every name the generated code could have relied on.
#[allow(non_camel_case_types, dead_code, unused_macros)]
pub mod shadowed {
    /// Shadows the `core` crate for relative paths.
    pub mod core {}
    /// Shadows the `std` crate for relative paths.
    pub mod std {}
    /// Shadows `core::fmt` for relative paths.
    pub mod fmt {}
    /// Shadows `Option`.
    pub struct Option;
    /// Shadows `Result`.
    pub struct Result;
    /// Shadows `Some`.
    pub struct Some;
    /// Shadows `None`.
    pub struct None;
    /// Shadows `Ok`.
    pub struct Ok;
    /// Shadows `Err`.
    pub struct Err;
    /// Shadows `Into`.
    pub trait Into {}
    /// Shadows `From`.
    pub trait From {}
    /// Shadows the primitive `str`.
    pub struct str;
    /// Shadows the primitive `bool`.
    pub struct bool;
    /// Shadows `fsm_runtime::mapping::TableMapping`.
    pub struct TableMapping;
    /// Shadows the `fsm_runtime::StateMachine` trait.
    pub struct StateMachine;
    /// Shadows `fsm_runtime::machine::Edge`.
    pub struct Edge;
    /// Shadows `fsm_runtime::machine::InvalidEvent`.
    pub struct InvalidEvent;
    /// Shadows `fsm_runtime::machine::UnknownState`.
    pub struct UnknownState;
    /// Shadows `FromStr`.
    pub trait FromStr {}
    /// Shadows `Display`.
    pub trait Display {}

    /// Shadows `matches!`.
    macro_rules! matches {
        ($($tokens:tt)*) => {
            compile_error!("the generated code used the user's `matches!`")
        };
    }
    /// Shadows `unreachable!`.
    macro_rules! unreachable {
        ($($tokens:tt)*) => {
            compile_error!("the generated code used the user's `unreachable!`")
        };
    }

    /// A parcel: events, `rename_all`, a renamed state and a table mapping.
    #[derive(::fsm_runtime::StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
    #[state_machine(rename_all = "SCREAMING_SNAKE_CASE", event = ParcelEvent, table = "parcels", version = "v")]
    pub enum Parcel {
        /// The first state.
        #[state(initial)]
        Packed,
        /// Renamed.
        #[transition(from = Packed, on = HandOver)]
        #[state(rename = "on-the-road")]
        InTransit,
        /// Terminal.
        #[transition(from = InTransit, on = Deliver)]
        Delivered,
        /// Without an event.
        #[transition(from = InTransit)]
        Lost,
    }
}

use fsm_runtime::StateMachine;
use shadowed::{Parcel, ParcelEvent};

fn main() {
    no_prelude::exercise();

    assert_eq!(Parcel::initial(), Parcel::Packed);
    assert_eq!(StateMachine::as_str(Parcel::InTransit), "on-the-road");
    assert_eq!(Parcel::from_stored("DELIVERED"), Ok(Parcel::Delivered));
    assert_eq!("on-the-road".parse::<Parcel>(), Ok(Parcel::InTransit));
    let unknown = Parcel::from_stored("PACKED!").unwrap_err();
    assert_eq!(unknown.expected, "PACKED, on-the-road, DELIVERED, LOST");
    assert_eq!(StateMachine::fire(Parcel::Packed, ParcelEvent::HandOver), Ok(Parcel::InTransit));
    let invalid = StateMachine::fire(Parcel::Delivered, ParcelEvent::Deliver).unwrap_err();
    assert_eq!((invalid.machine, invalid.state, invalid.event), (Parcel::MACHINE, "DELIVERED", "DELIVER"));
    assert!(Parcel::TRANSITIONS.iter().any(|edge| edge.to == Parcel::Lost && edge.event.is_none()));
    assert!(StateMachine::is_terminal(Parcel::Lost));
    assert!(!Parcel::can_transition(Parcel::Packed, Parcel::Lost));
    assert_eq!(&*Parcel::MAPPING.table, "parcels");
    assert_eq!(&*Parcel::MAPPING.version, "v");
    assert_eq!(Parcel::InTransit.to_string(), "on-the-road");
    assert_eq!(ParcelEvent::HandOver.to_string(), "HAND_OVER");

    // The serde codecs (the suite enables `fsm-runtime/serde`) are generated hygienically too.
    assert_eq!(serde_json::to_string(&Parcel::InTransit).unwrap(), "\"on-the-road\"");
    assert_eq!(serde_json::from_str::<Parcel>("\"LOST\"").unwrap(), Parcel::Lost);
    assert_eq!(serde_json::to_string(&no_prelude::Document::InReview).unwrap(), "\"in review\"");
}
