//! The tests that need no server, in one binary: the code the derive generates (`generated`),
//! the memory store against a model (`memory_model`), and the README against the code
//! (`readme`). The tests that talk to a database or Redis are in `tests/conformance`; the
//! compile-fail snapshots in `tests/compile_fail.rs` (trybuild).

// The machines of the conformance suite; this binary drives some of them.
#[allow(dead_code, unused_imports)]
#[path = "../conformance/fixture/machines.rs"]
mod machines;

mod generated;
mod memory_model;
mod readme;
