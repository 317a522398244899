//! The checks of a machine, and the transition table they resolve.
//!
//! Every check reports every problem it finds, each pointing at the offending token, and the
//! checks go on after a problem, so that the user sees all of them at once.

use proc_macro2::Span;

use crate::errors::Errors;
use crate::model::{Edge, Machine, State, Table, join};

/// The longest SQL identifier accepted: PostgreSQL's limit, which MySQL and SQLite also accept
/// (the same rule as `fsm_runtime::mapping::is_valid_identifier`).
pub const MAX_IDENTIFIER_LEN: usize = 63;

/// An edge with the tokens it was written with.
struct Declared {
    edge: Edge,
    /// The `on = Event` ident, or the source when no event is named.
    on_span: Span,
}

/// Checks `machine`, reporting every problem to `errors`; the resolved table when there is none
/// (neither here nor before, while parsing).
pub fn check(machine: &Machine, errors: &mut Errors) -> Option<Table> {
    let states = &machine.states;
    if states.is_empty() {
        errors.at(
            machine.ident.span(),
            "a state machine needs at least one state: add unit variants, one of them marked `#[state(initial)]`",
        );
    }

    let initial = initial_state(machine, errors);
    let (edges, unresolved) = resolve_edges(machine, errors);
    check_determinism(machine, &edges, errors);
    let cyclic =
        if machine.partial { vec![false; machine.events.len()] } else { check_replays(machine, &edges, errors) };
    check_terminals(machine, &edges, errors);
    check_in_flight(machine, &edges, &unresolved, errors);
    if initial.is_some() {
        check_reachability(machine, &edges, &unresolved, errors);
    }
    check_stored_names(machine, errors);
    check_mapping(machine, errors);

    match initial {
        Some(initial) if errors.is_empty() => {
            Some(Table { initial, edges: edges.into_iter().map(|declared| declared.edge).collect(), cyclic })
        }
        _ => None,
    }
}

/// Exactly one `#[state(initial)]`.
fn initial_state(machine: &Machine, errors: &mut Errors) -> Option<usize> {
    let mut initial: Option<usize> = None;
    for (index, state) in machine.states.iter().enumerate() {
        let Some(span) = state.initial else { continue };
        match initial {
            None => initial = Some(index),
            Some(first) => errors.at(
                span,
                format!(
                    "more than one initial state: `{}` is already initial; a machine has exactly one \
                     `#[state(initial)]`",
                    machine.states[first].ident
                ),
            ),
        }
    }
    if initial.is_none() && !machine.states.is_empty() {
        errors.at(
            machine.ident.span(),
            format!(
                "`{}` has no initial state: mark one of its states ({}) with `#[state(initial)]`",
                machine.ident,
                machine.state_list()
            ),
        );
    }
    initial
}

/// The edges of the table, in declaration order, without the rejected ones (unknown sources,
/// self-transitions, duplicates); and the targets of the transitions with an unknown source.
fn resolve_edges(machine: &Machine, errors: &mut Errors) -> (Vec<Declared>, Vec<usize>) {
    let mut edges: Vec<Declared> = Vec::new();
    let mut unresolved = Vec::new();
    for (to, state) in machine.states.iter().enumerate() {
        for transition in &state.transitions {
            let event = transition.on.as_ref().and_then(|on| machine.event_index(on));
            for source in &transition.from {
                let Some(from) = machine.state_index(source) else {
                    unresolved.push(to);
                    errors.at(
                        source.span(),
                        format!(
                            "unknown state `{source}` in `from`; the states of `{}` are: {}",
                            machine.ident,
                            machine.state_list()
                        ),
                    );
                    continue;
                };
                if from == to {
                    errors.at(
                        source.span(),
                        format!(
                            "self-transition `{source} -> {source}`: moving an entity to the state it is \
                             already in is always a no-op (`AlreadyApplied`); remove `{source}` from `from`"
                        ),
                    );
                    continue;
                }
                if edges.iter().any(|declared| declared.edge.from == from && declared.edge.to == to) {
                    errors.at(
                        source.span(),
                        format!(
                            "duplicate transition `{source} -> {}`: it is already declared, and the table has \
                             one edge per pair of states (a store moving an entity to `{}` could not tell two \
                             apart)",
                            state.ident, state.ident
                        ),
                    );
                    continue;
                }
                let on_span = transition.on.as_ref().map_or_else(|| source.span(), |on| on.span());
                edges.push(Declared { edge: Edge { from, to, event }, on_span });
            }
        }
    }
    (edges, unresolved)
}

/// One event leads from one state to one target.
fn check_determinism(machine: &Machine, edges: &[Declared], errors: &mut Errors) {
    for (index, declared) in edges.iter().enumerate() {
        let Edge { from, to, event: Some(event) } = declared.edge else { continue };
        let earlier = edges[..index].iter().find(|other| other.edge.event == Some(event) && other.edge.from == from);
        if let Some(earlier) = earlier {
            let name = &machine.events[event].ident;
            errors.at(
                declared.on_span,
                format!(
                    "non-deterministic event `{name}`: from `{}` it already leads to `{}`, here to `{}`; an \
                     event leads from one state to one target",
                    machine.states[from].ident, machine.states[earlier.edge.to].ident, machine.states[to].ident
                ),
            );
        }
    }
}

/// No event has a target that is also one of its sources, unless it is declared cyclic; every
/// event declared cyclic is used and is cyclic. Gives, per event, whether it is declared cyclic.
fn check_replays(machine: &Machine, edges: &[Declared], errors: &mut Errors) -> Vec<bool> {
    let mut declared_at: Vec<Option<Span>> = vec![None; machine.events.len()];
    for ident in &machine.cyclic {
        match machine.event_index(ident) {
            None if machine.events.is_empty() => errors.at(
                ident.span(),
                format!("`cyclic` names `{ident}`, but no transition of this machine names an event (`on = ...`)"),
            ),
            None => errors.at(
                ident.span(),
                format!("`cyclic` names `{ident}`, which no transition uses; the events are: {}", machine.event_list()),
            ),
            Some(event) if declared_at[event].is_some() => {
                errors.at(ident.span(), format!("`{ident}` is already declared cyclic"));
            }
            Some(event) => declared_at[event] = Some(ident.span()),
        }
    }

    for (event, declared) in declared_at.iter().enumerate() {
        let name = &machine.events[event].ident;
        let with_event = || edges.iter().filter(move |edge| edge.edge.event == Some(event));
        let sources: Vec<usize> = with_event().map(|edge| edge.edge.from).collect();
        let replayed = with_event().find(|edge| sources.contains(&edge.edge.to));
        match (replayed, declared) {
            (Some(edge), None) => {
                let target = &machine.states[edge.edge.to].ident;
                errors.at(
                    edge.on_span,
                    format!(
                        "event `{name}` can be replayed ambiguously: it leads to `{target}`, where `{name}` is \
                         legal too, so a replayed `{name}` cannot be told from a fresh one and would move the \
                         entity on; if the machine cycles on purpose, declare the event with \
                         `#[state_machine(cyclic = [{name}])]` and fire it with an idempotency key or an \
                         observed-state compare-and-set"
                    ),
                );
            }
            (None, Some(span)) => errors.at(
                *span,
                format!(
                    "event `{name}` is declared cyclic, but none of its targets is one of its sources, so a \
                     replay is already a no-op; remove it from `cyclic`"
                ),
            ),
            _ => {}
        }
    }
    declared_at.iter().map(Option::is_some).collect()
}

/// A state declared `terminal` has no outgoing transition.
fn check_terminals(machine: &Machine, edges: &[Declared], errors: &mut Errors) {
    for (index, state) in machine.states.iter().enumerate() {
        let Some(span) = state.terminal else { continue };
        let targets = join(
            edges
                .iter()
                .filter(|declared| declared.edge.from == index)
                .map(|declared| format!("`{}`", machine.states[declared.edge.to].ident)),
        );
        if !targets.is_empty() {
            errors.at(
                span,
                format!(
                    "state `{}` is declared terminal but has outgoing transitions (to {targets}); remove \
                     `terminal` or those transitions",
                    state.ident
                ),
            );
        }
    }
}

/// A state declared `in_flight` is entered by a transition (the one that starts the outside
/// call) and left by one (the one that records its result): it is not the initial state, it is
/// not `terminal`, and it has a transition into it and one out of it.
///
/// To spare the user follow-on errors: an initial in-flight state is not also reported as never
/// entered, nor a terminal one as never left (their errors say what is missing); a state with a
/// transition whose source is unknown or that could not be read counts as entered; and no state
/// counts as never left while a transition (which may list it in `from`) could not be read.
fn check_in_flight(machine: &Machine, edges: &[Declared], unresolved: &[usize], errors: &mut Errors) {
    let unread = machine.states.iter().any(|state| state.unread_transition);
    for (index, state) in machine.states.iter().enumerate() {
        let Some(span) = state.in_flight else { continue };
        let name = &state.ident;
        if state.initial.is_some() {
            errors.at(
                span,
                format!(
                    "state `{name}` cannot be both `in_flight` and `initial`: a new entity starts in the \
                     initial state before any call is made, and an in-flight state is entered by the \
                     transition that starts the call; add a state before `{name}` and a transition from it"
                ),
            );
        } else if !entered(index, state, edges, unresolved) {
            errors.at(
                span,
                format!(
                    "in-flight state `{name}` has no transition into it: an entity enters an in-flight state \
                     by the transition that starts the outside call; add one (`#[transition(from = ..., on = \
                     ...)]` on `{name}`)"
                ),
            );
        }
        if state.terminal.is_some() {
            errors.at(
                span,
                format!(
                    "state `{name}` cannot be both `in_flight` and `terminal`: the result of the outside call \
                     is recorded by a transition out of the in-flight state; remove `terminal` and add the \
                     transitions that record the result (`#[transition(from = {name}, ...)]` on their targets)"
                ),
            );
        } else if !unread && !edges.iter().any(|declared| declared.edge.from == index) {
            errors.at(
                span,
                format!(
                    "in-flight state `{name}` has no transition out of it, so the result of the outside call \
                     could never be recorded: add `#[transition(from = {name}, on = ...)]` to the states that \
                     record it (a success and a failure)"
                ),
            );
        }
    }
}

/// Whether a transition into the state `index` is declared: an edge, or a transition whose source
/// is unknown or that could not be read (reported already).
fn entered(index: usize, state: &State, edges: &[Declared], unresolved: &[usize]) -> bool {
    state.unread_transition || unresolved.contains(&index) || edges.iter().any(|declared| declared.edge.to == index)
}

/// Every state is reachable from the initial one.
///
/// To spare the user follow-on errors, the search also starts from every other state marked
/// initial (already reported), from the targets of transitions with an unknown source, and from
/// the states with a transition that could not be read; and an in-flight state with no
/// transition into it is left out (`check_in_flight` reports it).
fn check_reachability(machine: &Machine, edges: &[Declared], unresolved: &[usize], errors: &mut Errors) {
    let roots: Vec<usize> = (0..machine.states.len())
        .filter(|index| {
            let state = &machine.states[*index];
            state.initial.is_some() || state.unread_transition || unresolved.contains(index)
        })
        .collect();
    let Some(&initial) = roots.iter().find(|index| machine.states[**index].initial.is_some()) else {
        return;
    };
    let mut reached = vec![false; machine.states.len()];
    for &root in &roots {
        reached[root] = true;
    }
    let mut queue = roots;
    while let Some(state) = queue.pop() {
        for declared in edges.iter().filter(|declared| declared.edge.from == state) {
            if !reached[declared.edge.to] {
                reached[declared.edge.to] = true;
                queue.push(declared.edge.to);
            }
        }
    }
    for (index, (state, reached)) in machine.states.iter().zip(reached).enumerate() {
        let reported = state.in_flight.is_some() && !entered(index, state, edges, unresolved);
        if !reached && !reported {
            errors.at(
                state.ident.span(),
                format!(
                    "state `{}` is unreachable from the initial state `{}`: add a transition to it \
                     (`#[transition(from = ...)]`) or remove it",
                    state.ident, machine.states[initial].ident
                ),
            );
        }
    }
}

/// No two states, and no two events, share a stored name.
fn check_stored_names(machine: &Machine, errors: &mut Errors) {
    for (index, state) in machine.states.iter().enumerate() {
        if let Some(first) = machine.states[..index].iter().find(|other| other.stored == state.stored) {
            errors.at(
                state.stored_span,
                format!(
                    "state `{}` is stored as \"{}\", like state `{}`: stored names must be unique (see \
                     `rename` and `rename_all`)",
                    state.ident, state.stored, first.ident
                ),
            );
        }
    }
    for (index, event) in machine.events.iter().enumerate() {
        if let Some(first) = machine.events[..index].iter().find(|other| other.stored == event.stored) {
            errors.at(
                event.ident.span(),
                format!(
                    "event `{}` is stored as \"{}\", like event `{}`: stored names must be unique (see \
                     `rename_all`)",
                    event.ident, event.stored, first.ident
                ),
            );
        }
    }
}

/// The table and column names are plain SQL identifiers.
fn check_mapping(machine: &Machine, errors: &mut Errors) {
    let mapping = &machine.mapping;
    for name in [&mapping.table, &mapping.id, &mapping.state, &mapping.version] {
        if is_valid_sql_identifier(&name.value) {
            continue;
        }
        let hint = if name.explicit {
            ""
        } else {
            "; it defaults to the snake_case of the enum's name: set one with `#[state_machine(table = \"...\")]`"
        };
        errors.at(
            name.span,
            format!(
                "invalid SQL identifier for the {}: \"{}\" (an identifier is a letter or `_` followed by \
                 letters, digits or `_`, at most {MAX_IDENTIFIER_LEN} bytes){hint}",
                name.role, name.value
            ),
        );
    }
}

/// Whether `value` is `[A-Za-z_][A-Za-z0-9_]*` of at most [`MAX_IDENTIFIER_LEN`] bytes.
pub fn is_valid_sql_identifier(value: &str) -> bool {
    let mut bytes = value.bytes();
    let starts_well = bytes.next().is_some_and(|first| first == b'_' || first.is_ascii_alphabetic());
    starts_well && value.len() <= MAX_IDENTIFIER_LEN && bytes.all(|byte| byte == b'_' || byte.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_identifiers() {
        for good in ["orders", "_x", "Orders_V2", "a", &"a".repeat(63)] {
            assert!(is_valid_sql_identifier(good), "{good}");
        }
        for bad in ["", "2fast", "order state", "orders; DROP TABLE users", "naïve", "a-b", "\"q\"", &"a".repeat(64)] {
            assert!(!is_valid_sql_identifier(bad), "{bad}");
        }
    }
}
