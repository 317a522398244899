//! Shared by the integration tests: the test machines and the database backends.
#![allow(dead_code, unused_imports)]

pub mod backends;
pub mod machines;
