//! Examples and tests of fsm-runtime.
