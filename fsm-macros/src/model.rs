//! The IR: what the attributes of one derive say ([`Machine`]), and the transition table that
//! validation resolves from it ([`Table`]).

use proc_macro2::{Ident, Span, TokenStream};

/// A derived state machine as written: the enum, its attributes and its variants.
pub struct Machine {
    /// The state enum.
    pub ident: Ident,
    /// The visibility of the state enum, given to the event enum too.
    pub vis: TokenStream,
    /// Whether the enum has generics or a where clause (rejected: no impl can be emitted).
    pub generic: bool,
    /// Whether `#[state_machine(...)]` could not be read in full, so that `cyclic` may be
    /// incomplete (the replay checks are then skipped, to spare the user follow-on errors).
    pub partial: bool,
    /// The event enum to generate (`event = Ident`, default `<Enum>Event`).
    pub event: Ident,
    /// The machine's name (`name = "..."`, default the enum's name).
    pub name: String,
    /// The entity table and its columns.
    pub mapping: Mapping,
    /// The events declared cyclic (`cyclic = [A, B]`).
    pub cyclic: Vec<Ident>,
    /// The states, in declaration order.
    pub states: Vec<State>,
    /// The events, in order of first use.
    pub events: Vec<Event>,
}

/// The entity table and columns of a machine.
pub struct Mapping {
    /// `table = "..."`, default the snake_case of the enum's name.
    pub table: SqlName,
    /// `id = "..."`, default `id`.
    pub id: SqlName,
    /// `column = "..."`, default `state`.
    pub state: SqlName,
    /// `version = "..."`, default `version`.
    pub version: SqlName,
}

/// An SQL identifier given to (or defaulted by) the derive.
pub struct SqlName {
    /// What it names, for error messages (`table`, `id column`...).
    pub role: &'static str,
    /// The identifier.
    pub value: String,
    /// Where it was written, or the enum's name when defaulted.
    pub span: Span,
    /// Whether the user wrote it (a defaulted one gets a hint to write it).
    pub explicit: bool,
}

/// One variant of the state enum.
pub struct State {
    /// The variant.
    pub ident: Ident,
    /// The stored name (after `rename` / `rename_all`).
    pub stored: String,
    /// The `rename` literal, or the variant when the name is derived from it.
    pub stored_span: Span,
    /// The `initial` keyword, when the variant is marked so.
    pub initial: Option<Span>,
    /// The `terminal` keyword, when the variant is marked so.
    pub terminal: Option<Span>,
    /// The `in_flight` keyword, when the variant is marked so: an entity in this state is
    /// waiting for the result of a call to an outside service.
    pub in_flight: Option<Span>,
    /// The `#[transition]` attributes leading to this variant, in order.
    pub transitions: Vec<Transition>,
    /// Whether one of its `#[transition]` attributes could not be read: the state is then taken
    /// as reachable, to spare the user follow-on errors.
    pub unread_transition: bool,
}

/// One `#[transition(from = ..., on = ...)]` attribute; its target is the variant it is on.
pub struct Transition {
    /// The source states, as written.
    pub from: Vec<Ident>,
    /// The event, when one is named.
    pub on: Option<Ident>,
    /// `strict`: reaching the target through another request is an error, not a no-op.
    pub strict: bool,
}

/// One event of the generated event enum.
pub struct Event {
    /// The variant of the event enum (as first written in an `on = ...`).
    pub ident: Ident,
    /// The stored name (after `rename_all`).
    pub stored: String,
}

impl Machine {
    /// The index of the state named `ident`.
    pub fn state_index(&self, ident: &Ident) -> Option<usize> {
        self.states.iter().position(|state| state.ident == *ident)
    }

    /// The index of the event named `ident`.
    pub fn event_index(&self, ident: &Ident) -> Option<usize> {
        self.events.iter().position(|event| event.ident == *ident)
    }

    /// The states marked `#[state(in_flight)]`, in declaration order.
    pub fn in_flight_states(&self) -> Vec<usize> {
        (0..self.states.len()).filter(|index| self.states[*index].in_flight.is_some()).collect()
    }

    /// The names of the states as written, comma separated, for error messages.
    pub fn state_list(&self) -> String {
        join(self.states.iter().map(|state| format!("`{}`", state.ident)))
    }

    /// The names of the events as written, comma separated, for error messages.
    pub fn event_list(&self) -> String {
        join(self.events.iter().map(|event| format!("`{}`", event.ident)))
    }
}

/// Joins items with `, `.
pub fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// The checked transition table of a machine: indices into [`Machine::states`] and
/// [`Machine::events`]. Built only when the machine has no error.
pub struct Table {
    /// The initial state.
    pub initial: usize,
    /// The edges, in declaration order: variants in order, each variant's transitions in order,
    /// each `from` list in order.
    pub edges: Vec<Edge>,
    /// For each event, whether it is declared cyclic.
    pub cyclic: Vec<bool>,
}

/// One edge of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// The source state.
    pub from: usize,
    /// The target state.
    pub to: usize,
    /// The event, if the transition names one.
    pub event: Option<usize>,
}

impl Table {
    /// The legal sources of `to`, in declaration order.
    pub fn sources(&self, to: usize) -> Vec<usize> {
        distinct(self.edges.iter().filter(|edge| edge.to == to).map(|edge| edge.from))
    }

    /// Whether no edge leaves `state`.
    pub fn is_terminal(&self, state: usize) -> bool {
        !self.edges.iter().any(|edge| edge.from == state)
    }

    /// The states `event` is legal in, in declaration order.
    pub fn event_sources(&self, event: usize) -> Vec<usize> {
        distinct(self.edges.iter().filter(|edge| edge.event == Some(event)).map(|edge| edge.from))
    }

    /// The states `event` leads to, without repeats, in declaration order.
    pub fn event_targets(&self, event: usize) -> Vec<usize> {
        distinct(self.edges.iter().filter(|edge| edge.event == Some(event)).map(|edge| edge.to))
    }
}

/// The items in order, without repeats.
fn distinct(items: impl Iterator<Item = usize>) -> Vec<usize> {
    let mut seen = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}
