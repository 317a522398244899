//! `#[derive(StateMachine)]`: the derive of [`fsm-runtime`](https://docs.rs/fsm-runtime)'s
//! `StateMachine` trait. Depend on `fsm-runtime`, which re-exports it; the generated code names
//! only paths of `fsm-runtime`.
//!
//! The derive reads the attributes into a small model (`parse.rs` walks the input into
//! `model.rs`, `attr.rs` reads each attribute by the typed keys of `key.rs`), checks the machine
//! (`validate.rs`), and generates the table as `match`es and `const` slices (`expand.rs`, with
//! the diagrams of `render.rs`). All errors of one enum are reported at once, each pointing at
//! the offending token; alongside them, the event enum and a stub of the impl are still emitted,
//! so that code using the machine reports no follow-on errors.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod attr;
mod case;
mod errors;
mod expand;
mod key;
mod model;
mod parse;
mod render;
mod validate;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

use crate::errors::Errors;
use crate::expand::Bodies;

/// Derives `fsm_runtime::StateMachine` for a unit-only enum whose variants are the states.
///
/// ```ignore
/// #[derive(StateMachine, Clone, Copy, Debug, PartialEq, Eq)]
/// #[state_machine(rename_all = "snake_case", event = OrderEvent, table = "orders")]
/// pub enum OrderState {
///     #[state(initial)]
///     Created,
///     #[transition(from = Created, on = Pay)]
///     Paid,
///     #[transition(from = Paid, on = Ship)]
///     Shipped,
///     #[transition(from = [Created, Paid], on = Cancel)]
///     Cancelled,
/// }
/// ```
///
/// Enum attribute `#[state_machine(...)]`, every key optional:
/// - `rename_all = "..."`: the case of the stored names of states and events, one of serde's
///   (`lowercase`, `UPPERCASE`, `PascalCase`, `camelCase`, `snake_case`,
///   `SCREAMING_SNAKE_CASE`, `kebab-case`, `SCREAMING-KEBAB-CASE`); default: the names as written;
/// - `event = Ident`: the name of the generated event enum, default `<Enum>Event`;
/// - `name = "..."`: the machine's name (`MACHINE`), default the enum's name;
/// - `table`, `id`, `column`, `version` (`= "..."`): the entity table and its id, state and
///   version columns (`MAPPING`), default the snake_case of the enum's name, `id`, `state` and
///   `version`; each must be an SQL identifier (`[A-Za-z_][A-Za-z0-9_]*`, at most 63 bytes);
/// - `cyclic = [Event, ...]`: events that lead, on purpose, to one of their own sources.
///
/// Variant attributes: `#[state(initial)]` (exactly one), `#[state(terminal)]` (checked: no
/// transition leaves it), `#[state(in_flight)]` (a call to an outside service is under way in
/// it; checked: it is neither initial nor terminal, a transition leads to it and one leaves it),
/// `#[state(rename = "...")]`, combinable in one attribute; and any number of
/// `#[transition(from = A, on = Event)]` or `#[transition(from = [A, B], on = Event)]`, whose
/// target is the variant they are written on (`on` is optional).
///
/// Generated: the event enum (events in order of first use, with `as_str` and `Display`); the
/// `StateMachine` impl; inherent `const` items mirroring the pure ones (`STATES`, `IN_FLIGHT`,
/// `MERMAID`, `DOT`, `initial`, `as_str`, `sources`, `can_transition`, `is_terminal`, `fire`), usable in
/// `const` context without importing the trait; `FromStr` and `Display` by stored name; and the
/// serde (and other) codecs that `fsm-runtime`'s features enable.
#[proc_macro_derive(StateMachine, attributes(state_machine, state, transition))]
pub fn derive_state_machine(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    derive(&input).into()
}

/// The expansion of the derive: the machine when it has no error; else the errors, the event
/// enum and stubs of the other items.
fn derive(input: &DeriveInput) -> proc_macro2::TokenStream {
    let mut errors = Errors::default();
    let Some(machine) = parse::machine(input, &mut errors) else {
        return errors.to_compile_errors();
    };
    let table = validate::check(&machine, &mut errors);
    let event_enum = expand::event_enum(&machine);
    match table {
        Some(table) if errors.is_empty() => {
            let items = expand::machine(&machine, &Bodies::real(&machine, &table));
            quote::quote!(#event_enum #items)
        }
        _ => {
            let errors = errors.to_compile_errors();
            let stubs = (!machine.generic).then(|| expand::machine(&machine, &Bodies::stub()));
            quote::quote!(#errors #event_enum #stubs)
        }
    }
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use super::*;

    /// The error messages of a derive input, in order.
    fn errors_of(input: DeriveInput) -> Vec<String> {
        let mut errors = Errors::default();
        if let Some(machine) = parse::machine(&input, &mut errors) {
            validate::check(&machine, &mut errors);
        }
        errors.messages()
    }

    /// The checked machine and its table; panics on an error.
    fn checked(input: DeriveInput) -> (model::Machine, model::Table) {
        let mut errors = Errors::default();
        let machine = parse::machine(&input, &mut errors).expect("an enum");
        let table = validate::check(&machine, &mut errors);
        assert!(errors.is_empty(), "{:?}", errors.messages());
        (machine, table.expect("a table"))
    }

    fn order() -> DeriveInput {
        parse_quote! {
            #[state_machine(rename_all = "snake_case", event = OrderEvent)]
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
        }
    }

    #[test]
    fn a_valid_machine_resolves_its_table() {
        let (machine, table) = checked(order());
        assert_eq!(machine.name, "OrderState");
        assert_eq!(machine.mapping.table.value, "order_state");
        let events: Vec<_> = machine.events.iter().map(|event| event.stored.as_str()).collect();
        assert_eq!(events, ["pay", "ship", "cancel"]);
        assert_eq!(table.initial, 0);
        assert_eq!(table.sources(3), [0, 1]);
        assert_eq!(table.event_targets(2), [3]);
        assert!(table.is_terminal(2) && table.is_terminal(3) && !table.is_terminal(0));
    }

    #[test]
    fn renders_mermaid_and_dot() {
        let (machine, table) = checked(order());
        assert_eq!(
            render::mermaid(&machine, &table),
            "stateDiagram-v2\n    [*] --> created\n    created --> paid: pay\n    paid --> shipped: ship\n    \
             created --> cancelled: cancel\n    paid --> cancelled: cancel\n    shipped --> [*]\n    \
             cancelled --> [*]\n"
        );
        assert_eq!(
            render::dot(&machine, &table),
            "digraph OrderState {\n    rankdir=LR;\n    \"created\" [shape=doublecircle];\n    \
             \"created\" -> \"paid\" [label=\"pay\"];\n    \"paid\" -> \"shipped\" [label=\"ship\"];\n    \
             \"created\" -> \"cancelled\" [label=\"cancel\"];\n    \"paid\" -> \"cancelled\" [label=\"cancel\"];\n    \
             \"shipped\" [shape=box];\n    \"cancelled\" [shape=box];\n}\n"
        );
    }

    #[test]
    fn mermaid_aliases_names_that_are_not_plain_words() {
        let (machine, table) = checked(parse_quote! {
            #[state_machine(rename_all = "kebab-case", name = "graph")]
            enum Parcel {
                #[state(initial, rename = "s1")]
                New,
                #[transition(from = New)]
                InTransit,
                #[transition(from = InTransit)]
                End,
            }
        });
        assert_eq!(
            render::mermaid(&machine, &table),
            "stateDiagram-v2\n    state \"in-transit\" as s1_\n    state \"end\" as s2\n    [*] --> s1\n    s1 --> s1_\n    \
             s1_ --> s2\n    s2 --> [*]\n"
        );
        assert!(render::dot(&machine, &table).starts_with("digraph \"graph\" {\n"));
    }

    fn payment() -> DeriveInput {
        parse_quote! {
            #[state_machine(rename_all = "snake_case")]
            enum Payment {
                #[state(initial)]
                Authorized,
                #[state(in_flight)]
                #[transition(from = Authorized, on = Capture)]
                Capturing,
                #[transition(from = Capturing, on = Confirm)]
                Captured,
                #[transition(from = Capturing, on = Decline)]
                Declined,
            }
        }
    }

    #[test]
    fn renders_in_flight_states_dashed() {
        let (machine, table) = checked(payment());
        assert_eq!(machine.in_flight_states(), [1]);
        assert_eq!(
            render::mermaid(&machine, &table),
            "stateDiagram-v2\n    [*] --> authorized\n    authorized --> capturing: capture\n    \
             capturing --> captured: confirm\n    capturing --> declined: decline\n    captured --> [*]\n    \
             declined --> [*]\n    classDef inFlight stroke-dasharray: 5 5\n    class capturing inFlight\n"
        );
        assert_eq!(
            render::dot(&machine, &table),
            "digraph Payment {\n    rankdir=LR;\n    \"authorized\" [shape=doublecircle];\n    \
             \"authorized\" -> \"capturing\" [label=\"capture\"];\n    \
             \"capturing\" -> \"captured\" [label=\"confirm\"];\n    \
             \"capturing\" -> \"declined\" [label=\"decline\"];\n    \"captured\" [shape=box];\n    \
             \"declined\" [shape=box];\n    \"capturing\" [style=dashed];\n}\n"
        );
    }

    #[test]
    fn mermaid_classes_in_flight_states_by_their_alias() {
        let (machine, table) = checked(parse_quote! {
            #[state_machine(rename_all = "kebab-case")]
            enum Refund {
                #[state(initial)]
                Requested,
                #[state(in_flight)]
                #[transition(from = Requested, on = Send)]
                InTransit,
                #[state(in_flight, rename = "class")]
                #[transition(from = InTransit, on = Retry)]
                Retrying,
                #[transition(from = [InTransit, Retrying], on = Settle)]
                Done,
            }
        });
        assert_eq!(
            render::mermaid(&machine, &table),
            "stateDiagram-v2\n    state \"in-transit\" as s1\n    state \"class\" as s2\n    [*] --> requested\n    \
             requested --> s1: send\n    s1 --> s2: retry\n    s1 --> done: settle\n    s2 --> done: settle\n    \
             done --> [*]\n    classDef inFlight stroke-dasharray: 5 5\n    class s1 inFlight\n    \
             class s2 inFlight\n"
        );
        let dot = render::dot(&machine, &table);
        assert!(dot.ends_with("    \"in-transit\" [style=dashed];\n    \"class\" [style=dashed];\n}\n"), "{dot}");
    }

    #[test]
    fn a_machine_without_in_flight_states_renders_no_class() {
        let (machine, table) = checked(order());
        assert!(machine.in_flight_states().is_empty());
        assert!(!render::mermaid(&machine, &table).contains("classDef"));
        assert!(!render::dot(&machine, &table).contains("dashed"));
    }

    #[test]
    fn in_flight_states_are_entered_and_left_by_transitions() {
        let messages = errors_of(parse_quote! {
            enum Payment {
                #[state(initial, in_flight)]
                Authorized,
                #[state(in_flight, terminal)]
                #[transition(from = Authorized, on = Capture)]
                Capturing,
                #[state(in_flight)]
                Refunding,
                #[state(in_flight)]
                #[transition(from = Capturing, on = Retry)]
                Retrying,
            }
        });
        assert_eq!(messages.len(), 6, "{messages:#?}");
        assert!(messages[0].starts_with("state `Capturing` is declared terminal but has outgoing transitions"));
        assert!(messages[1].starts_with("state `Authorized` cannot be both `in_flight` and `initial`"));
        assert!(messages[2].starts_with("state `Capturing` cannot be both `in_flight` and `terminal`"));
        assert!(messages[3].starts_with("in-flight state `Refunding` has no transition into it"));
        assert!(messages[4].starts_with("in-flight state `Refunding` has no transition out of it"));
        assert!(messages[5].starts_with("in-flight state `Retrying` has no transition out of it"));
    }

    #[test]
    fn in_flight_checks_spare_follow_on_errors() {
        // A terminal in-flight state is not also reported as never left; an in-flight state with
        // no transition into it is not also reported as unreachable.
        let messages = errors_of(parse_quote! {
            enum Payment {
                #[state(initial)]
                Authorized,
                #[state(in_flight, terminal)]
                #[transition(from = Authorized, on = Capture)]
                Capturing,
                #[state(in_flight)]
                Refunding,
                #[transition(from = Refunding, on = Refund)]
                Refunded,
            }
        });
        assert_eq!(messages.len(), 3, "{messages:#?}");
        assert!(messages[0].starts_with("state `Capturing` cannot be both `in_flight` and `terminal`"));
        assert!(messages[1].starts_with("in-flight state `Refunding` has no transition into it"));
        assert!(messages[2].starts_with("state `Refunded` is unreachable from the initial state `Authorized`"));

        // A transition that could not be read may list the state in `from`, or lead to it.
        let messages = errors_of(parse_quote! {
            enum Payment {
                #[state(initial)]
                Authorized,
                #[state(in_flight)]
                #[transition(from = [Authorized, Nope], on = Capture)]
                Capturing,
                #[transition(from = Capturing, on = "Confirm")]
                Captured,
                #[state(in_flight)]
                #[transition(from = Unknown)]
                Refunding,
            }
        });
        assert_eq!(messages.len(), 3, "{messages:#?}");
        assert!(messages[0].starts_with("expected a name, written as an identifier"));
        assert!(messages[1].starts_with("unknown state `Nope` in `from`"));
        assert!(messages[2].starts_with("unknown state `Unknown` in `from`"));
    }

    #[test]
    fn reports_every_error_of_an_enum_at_once() {
        let messages = errors_of(parse_quote! {
            #[state_machine(table = "bad table", colour = "red")]
            enum Broken {
                #[state(initial)]
                A,
                #[state(initial)]
                #[transition(from = [A, Nope], on = Go)]
                B,
                #[transition(from = C)]
                C,
            }
        });
        assert_eq!(messages.len(), 6, "{messages:#?}");
        assert!(messages[0].starts_with("unknown key `colour` in `#[state_machine(...)]`"));
        assert!(messages[1].starts_with("more than one initial state"));
        assert!(messages[2].starts_with("unknown state `Nope` in `from`; the states of `Broken` are: `A`, `B`, `C`"));
        assert!(messages[3].starts_with("self-transition `C -> C`"));
        assert!(messages[4].starts_with("state `C` is unreachable from the initial state `A`"));
        assert!(messages[5].starts_with("invalid SQL identifier for the table: \"bad table\""));
    }

    #[test]
    fn structs_and_unknown_rules_are_rejected() {
        let messages = errors_of(parse_quote! {
            #[state_machine(rename_all = "snake-case")]
            struct NotAnEnum;
        });
        assert_eq!(messages.len(), 2, "{messages:#?}");
        assert!(messages[0].contains("\"snake_case\""));
        assert!(messages[1].contains("not structs"));
    }

    #[test]
    fn a_machine_with_errors_still_emits_its_event_enum_and_stubs() {
        let output = derive(&parse_quote! {
            enum Light {
                #[state(initial)]
                #[transition(from = Green, on = Next)]
                Red,
                #[transition(from = Red, on = Next)]
                Green,
            }
        })
        .to_string();
        assert!(output.contains("compile_error"));
        assert!(output.contains("enum LightEvent"));
        assert!(output.contains("StateMachine for Light"));
        assert!(output.contains("unreachable"));
    }
}
