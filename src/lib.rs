//! Examples, integration tests and benchmarks of `fsm-runtime`.
//!
//! The machines shared by the examples live here, so that tests can check what the README
//! shows against what the macro generates.
#![forbid(unsafe_code)]

pub mod order;
pub mod order_demo;
pub mod payments;

/// The README's Rust code blocks, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
