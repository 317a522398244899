//! What becomes of a message whose publication failed: [`NextAttempt`], and its error as the
//! outbox keeps it ([`error_text`]).

use std::fmt::Write as _;

use crate::error::BoxError;

/// The longest error text an outbox keeps, in bytes; a longer one is cut at a character
/// boundary and ends with `…`.
pub const MAX_ERROR_BYTES: usize = 2_000;

/// When a message whose publication failed is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextAttempt {
    /// Not before this time, in microseconds since the Unix epoch.
    At(i64),
    /// Never: it is parked as dead, until it is requeued.
    Dead,
}

/// The text an outbox keeps of a publisher's `error`: its message and those of its sources,
/// joined by `": "`, at most [`MAX_ERROR_BYTES`] long.
///
/// ```
/// use fsm_runtime::outbox::{MAX_ERROR_BYTES, error_text};
///
/// assert_eq!(error_text(&"broker unreachable".into()), "broker unreachable");
/// let long = error_text(&"é".repeat(5_000).into());
/// assert!(long.len() <= MAX_ERROR_BYTES && long.ends_with('…'));
/// ```
pub fn error_text(error: &BoxError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    truncated(text)
}

/// `text` cut to [`MAX_ERROR_BYTES`] at a character boundary, marked with `…`.
fn truncated(mut text: String) -> String {
    if text.len() <= MAX_ERROR_BYTES {
        return text;
    }
    let mut end = MAX_ERROR_BYTES - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_are_cut_at_a_character_boundary() {
        assert_eq!(truncated("short".to_owned()), "short");
        let cut = truncated("ab€".repeat(1_000));
        assert!(cut.len() <= MAX_ERROR_BYTES && cut.len() > MAX_ERROR_BYTES - 8, "{}", cut.len());
        assert!(cut.ends_with('…'));
    }

    #[derive(Debug)]
    struct Refused(std::io::Error);

    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("the broker refused the message")
        }
    }

    impl std::error::Error for Refused {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn sources_are_kept() {
        let error: BoxError = Box::new(Refused(std::io::Error::other("connection reset")));
        assert_eq!(error_text(&error), "the broker refused the message: connection reset");
    }
}
