//! Collecting every error of one derive, so that the user sees all of them at once.

use proc_macro2::{Span, TokenStream};

/// The errors found so far, combined into one [`syn::Error`] (`syn::Error::combine`).
#[derive(Default)]
pub struct Errors {
    combined: Option<syn::Error>,
}

impl Errors {
    /// Adds an error.
    pub fn push(&mut self, error: syn::Error) {
        match &mut self.combined {
            Some(combined) => combined.combine(error),
            None => self.combined = Some(error),
        }
    }

    /// Adds an error pointing at `span`.
    pub fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Whether no error was found.
    pub fn is_empty(&self) -> bool {
        self.combined.is_none()
    }

    /// The errors as `compile_error!` invocations, or nothing when there is none.
    pub fn to_compile_errors(&self) -> TokenStream {
        self.combined.as_ref().map(syn::Error::to_compile_error).unwrap_or_default()
    }
}

#[cfg(test)]
impl Errors {
    /// The messages, in the order they were pushed.
    pub fn messages(&self) -> Vec<String> {
        self.combined.iter().flat_map(|combined| combined.clone().into_iter().map(|error| error.to_string())).collect()
    }
}
