//! Walking the derive input into a [`Machine`]: the enum, its variants and their attributes
//! (each attribute is read by `attr.rs`).
//!
//! Every problem is pushed to [`Errors`] and reading goes on, so that one compilation reports all
//! of them; the structural checks of the machine itself are in `validate.rs`.

use proc_macro2::{Ident, Span};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::{Attribute, Data, DataEnum, DeriveInput, Fields, Generics};

use crate::attr::{self, StateAttrs};
use crate::case::{RenameRule, snake_case};
use crate::errors::Errors;
use crate::key::{Key, StateKey, TransitionKey};
use crate::model::{Event, Machine, Mapping, SqlName, State, join};

/// What `#[derive(StateMachine)]` accepts, for error messages.
const ONLY_UNIT_ENUMS: &str = "`#[derive(StateMachine)]` only supports enums whose variants are unit variants \
                               (the states)";

/// Reads the derive input. `None` when it is not an enum: there is nothing more to check or emit.
pub fn machine(input: &DeriveInput, errors: &mut Errors) -> Option<Machine> {
    let attrs = attr::machine_attrs(&input.attrs, errors);
    let data = enum_data(input, errors)?;
    let generic = generic(&input.generics, errors);
    let states = states(&input.ident, data, attrs.rename_all, errors);
    let events = events(&states, attrs.rename_all);

    let ident = &input.ident;
    let bare = ident.unraw().to_string();
    let span = ident.span();
    let sql = |role, given: Option<(String, Span)>, default: String| match given {
        Some((value, span)) => SqlName { role, value, span, explicit: true },
        None => SqlName { role, value: default, span, explicit: false },
    };
    Some(Machine {
        ident: ident.clone(),
        vis: input.vis.to_token_stream(),
        generic,
        partial: attrs.partial,
        event: attrs.event.unwrap_or_else(|| Ident::new(&format!("{bare}Event"), span)),
        name: attrs.name.unwrap_or_else(|| bare.clone()),
        mapping: Mapping {
            table: sql("table", attrs.table, snake_case(&bare)),
            id: sql("id column", attrs.id, "id".to_owned()),
            state: sql("state column", attrs.column, "state".to_owned()),
            version: sql("version column", attrs.version, "version".to_owned()),
        },
        cyclic: attrs.cyclic,
        states,
        events,
    })
}

/// The variants of the input; `None`, reported, when it is a struct or a union.
fn enum_data<'a>(input: &'a DeriveInput, errors: &mut Errors) -> Option<&'a DataEnum> {
    match &input.data {
        Data::Enum(data) => Some(data),
        Data::Struct(data) => {
            errors.push(syn::Error::new(data.struct_token.span, format!("{ONLY_UNIT_ENUMS}, not structs")));
            None
        }
        Data::Union(data) => {
            errors.push(syn::Error::new(data.union_token.span, format!("{ONLY_UNIT_ENUMS}, not unions")));
            None
        }
    }
}

/// Whether the enum has generics or a where clause; reported when it has.
fn generic(generics: &Generics, errors: &mut Errors) -> bool {
    let message = "a state machine cannot be generic: its states are plain unit variants, stored by name";
    if !generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(generics, message));
    } else if generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(&generics.where_clause, message));
    } else {
        return false;
    }
    true
}

/// Reads every variant of the enum `ident` as a state, stored under `rule`.
fn states(ident: &Ident, data: &DataEnum, rule: Option<RenameRule>, errors: &mut Errors) -> Vec<State> {
    let declared = format!(
        "the states of `{ident}` are: {}",
        join(data.variants.iter().map(|variant| format!("`{}`", variant.ident)))
    );
    let mut states = Vec::with_capacity(data.variants.len());
    for variant in &data.variants {
        if !matches!(variant.fields, Fields::Unit) {
            errors.push(syn::Error::new_spanned(
                &variant.fields,
                format!(
                    "state `{}` has fields: the states of a machine are unit variants, stored by name",
                    variant.ident
                ),
            ));
        }
        states.push(state(&variant.ident, &variant.attrs, rule, &declared, errors));
    }
    states
}

/// The events named by the transitions of `states`, in order of first use, stored under `rule`.
fn events(states: &[State], rule: Option<RenameRule>) -> Vec<Event> {
    let mut events: Vec<Event> = Vec::new();
    for transition in states.iter().flat_map(|state| &state.transitions) {
        if let Some(on) = &transition.on
            && !events.iter().any(|event| event.ident == *on)
        {
            events.push(Event { ident: on.clone(), stored: stored_name(on, rule) });
        }
    }
    events
}

/// Reads one variant and its `#[state(...)]` and `#[transition(...)]` attributes; `declared`
/// ("the states of `Order` are: ...") completes the error of an empty `from`.
fn state(ident: &Ident, attrs: &[Attribute], rule: Option<RenameRule>, declared: &str, errors: &mut Errors) -> State {
    let mut keys = StateAttrs::default();
    let mut transitions = Vec::new();
    let mut unread_transition = false;
    for attr in attrs {
        if attr.path().is_ident(StateKey::ATTRIBUTE) {
            keys.read(attr, errors);
        } else if attr.path().is_ident(TransitionKey::ATTRIBUTE) {
            let read = attr::transition_attr(attr, declared, errors);
            transitions.extend(read.transition);
            unread_transition |= !read.complete;
        }
    }
    let (stored, stored_span) = match keys.rename {
        Some(lit) => (lit.value(), lit.span()),
        None => (stored_name(ident, rule), ident.span()),
    };
    State {
        ident: ident.clone(),
        stored,
        stored_span,
        initial: keys.initial,
        terminal: keys.terminal,
        in_flight: keys.in_flight,
        transitions,
        unread_transition,
    }
}

/// The stored name of a variant or an event under `rule`.
fn stored_name(ident: &Ident, rule: Option<RenameRule>) -> String {
    let name = ident.unraw().to_string();
    match rule {
        Some(rule) => rule.apply(&name),
        None => name,
    }
}
