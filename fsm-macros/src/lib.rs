//! placeholder
use proc_macro::TokenStream;
#[proc_macro_derive(StateMachine, attributes(state_machine, state, transition))]
pub fn derive_state_machine(_input: TokenStream) -> TokenStream { TokenStream::new() }
