//! The Mermaid and Graphviz DOT renderings of a machine, built at expansion time into `const`s.

use std::fmt::Write;

use crate::model::{Machine, Table};

/// A Mermaid `stateDiagram-v2`: `[*] --> initial`, one line per edge in declaration order
/// (`: event` when the edge has one), then `state --> [*]` for every terminal state in
/// declaration order; then, when the machine has in-flight states, the dashed style
/// `classDef inFlight stroke-dasharray: 5 5` and one `class state inFlight` line per in-flight
/// state in declaration order.
///
/// States are named by their stored names. A stored name that is not a plain word
/// (`[A-Za-z0-9_]+`, which Mermaid may misread: `in-transit`), or is a Mermaid keyword (`end`),
/// is declared first as `state "in-transit" as s2` and named by that alias.
pub fn mermaid(machine: &Machine, table: &Table) -> String {
    let ids = mermaid_ids(machine);
    let mut out = String::from("stateDiagram-v2\n");
    for (state, id) in machine.states.iter().zip(&ids) {
        if *id != state.stored {
            let label = state.stored.replace('"', "#quot;");
            let _ = writeln!(out, "    state \"{label}\" as {id}");
        }
    }
    let _ = writeln!(out, "    [*] --> {}", ids[table.initial]);
    for edge in &table.edges {
        let _ = write!(out, "    {} --> {}", ids[edge.from], ids[edge.to]);
        if let Some(event) = edge.event {
            let _ = write!(out, ": {}", machine.events[event].stored);
        }
        out.push('\n');
    }
    for (index, id) in ids.iter().enumerate() {
        if table.is_terminal(index) {
            let _ = writeln!(out, "    {id} --> [*]");
        }
    }
    let in_flight = machine.in_flight_states();
    if !in_flight.is_empty() {
        let _ = writeln!(out, "    classDef {MERMAID_IN_FLIGHT} stroke-dasharray: 5 5");
        for index in in_flight {
            let _ = writeln!(out, "    class {} {MERMAID_IN_FLIGHT}", ids[index]);
        }
    }
    out
}

/// The Mermaid class of in-flight states, drawn dashed.
const MERMAID_IN_FLIGHT: &str = "inFlight";

/// Words of Mermaid's state diagrams that a node id must not be.
const MERMAID_KEYWORDS: [&str; 8] = ["state", "note", "end", "direction", "class", "classDef", "style", "as"];

/// The Mermaid node id of every state: its stored name when it is a plain word and no keyword,
/// else an alias `s<index>` (with `_` appended until it is distinct from every other id).
fn mermaid_ids(machine: &Machine) -> Vec<String> {
    let plain = |name: &str| {
        !name.is_empty()
            && name.bytes().all(|byte| byte == b'_' || byte.is_ascii_alphanumeric())
            && !MERMAID_KEYWORDS.iter().any(|keyword| keyword.eq_ignore_ascii_case(name))
    };
    let mut ids: Vec<String> = Vec::with_capacity(machine.states.len());
    for (index, state) in machine.states.iter().enumerate() {
        if plain(&state.stored) {
            ids.push(state.stored.clone());
            continue;
        }
        let mut alias = format!("s{index}");
        while machine.states.iter().any(|other| other.stored == alias) || ids.contains(&alias) {
            alias.push('_');
        }
        ids.push(alias);
    }
    ids
}

/// A Graphviz digraph named after the machine, laid out left to right: the initial state drawn
/// as a double circle, one `"from" -> "to"` line per edge in declaration order (with
/// `[label="event"]` when the edge has one), then every terminal state drawn as a box (unless it
/// is also the initial state), then every in-flight state drawn dashed. Nodes are named by their
/// stored names, quoted.
pub fn dot(machine: &Machine, table: &Table) -> String {
    let mut out = format!("digraph {} {{\n    rankdir=LR;\n", dot_id(&machine.name));
    let quoted = |index: usize| quote(&machine.states[index].stored);
    let _ = writeln!(out, "    {} [shape=doublecircle];", quoted(table.initial));
    for edge in &table.edges {
        let _ = write!(out, "    {} -> {}", quoted(edge.from), quoted(edge.to));
        if let Some(event) = edge.event {
            let _ = write!(out, " [label={}]", quote(&machine.events[event].stored));
        }
        out.push_str(";\n");
    }
    for index in 0..machine.states.len() {
        if table.is_terminal(index) && index != table.initial {
            let _ = writeln!(out, "    {} [shape=box];", quoted(index));
        }
    }
    for index in machine.in_flight_states() {
        let _ = writeln!(out, "    {} [style=dashed];", quoted(index));
    }
    out.push_str("}\n");
    out
}

/// A DOT id: bare when it is a plain identifier and no keyword, quoted otherwise.
fn dot_id(name: &str) -> String {
    const KEYWORDS: [&str; 6] = ["graph", "digraph", "subgraph", "node", "edge", "strict"];
    let mut bytes = name.bytes();
    let bare = bytes.next().is_some_and(|first| first == b'_' || first.is_ascii_alphabetic())
        && bytes.all(|byte| byte == b'_' || byte.is_ascii_alphanumeric())
        && !KEYWORDS.iter().any(|keyword| keyword.eq_ignore_ascii_case(name));
    if bare { name.to_owned() } else { quote(name) }
}

/// A DOT double-quoted string.
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}
