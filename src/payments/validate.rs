//! Checks on the ids and strings of a request, done before any of them reaches SQL: a value a
//! database cannot store (PostgreSQL refuses a NUL byte in text, SQLSTATE `22021`) or an id no
//! resource can have is the client's mistake, a 400 or 422 problem naming the parameter or
//! field, never a database error.

use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::Problem;

/// The longest id: the width of the `id` and `account_id` columns (`VARCHAR(64)`).
pub const MAX_ID_LEN: usize = 64;

/// The longest free-text field (a transition's `reason`), in characters.
pub const MAX_TEXT_LEN: usize = 1_000;

/// Why an id or a string of a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    /// The id is empty.
    #[error("is empty")]
    Empty,
    /// The id or the text is longer than its limit.
    #[error("is {len} long, more than the {max} allowed")]
    TooLong {
        /// Its length (bytes for an id, characters for a text).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The value contains a NUL character, which no database column of the service can hold.
    #[error("contains a NUL character at byte {at}")]
    Nul {
        /// The byte offset of the first NUL.
        at: usize,
    },
    /// The id contains a character outside `A-Z a-z 0-9 - _ . ~`.
    #[error("contains {found:?} at byte {at}; ids are made of A-Z, a-z, 0-9, `-`, `_`, `.` and `~`")]
    BadIdCharacter {
        /// The character.
        found: char,
        /// Its byte offset.
        at: usize,
    },
}

/// Checks an id (of an account or a payment): 1 to [`MAX_ID_LEN`] bytes, all among the URI's
/// unreserved ones (`A-Z a-z 0-9 - _ . ~`), which every id the service hands out is made of.
pub fn check_id(id: &str) -> Result<(), InvalidInput> {
    if id.is_empty() {
        return Err(InvalidInput::Empty);
    }
    if id.len() > MAX_ID_LEN {
        return Err(InvalidInput::TooLong { len: id.len(), max: MAX_ID_LEN });
    }
    if let Some(at) = id.find('\0') {
        return Err(InvalidInput::Nul { at });
    }
    if let Some((at, found)) =
        id.char_indices().find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~')))
    {
        return Err(InvalidInput::BadIdCharacter { found, at });
    }
    Ok(())
}

/// Checks a free text (a `reason`): no NUL, at most [`MAX_TEXT_LEN`] characters.
pub fn check_text(text: &str) -> Result<(), InvalidInput> {
    if let Some(at) = text.find('\0') {
        return Err(InvalidInput::Nul { at });
    }
    let len = text.chars().count();
    if len > MAX_TEXT_LEN {
        return Err(InvalidInput::TooLong { len, max: MAX_TEXT_LEN });
    }
    Ok(())
}

/// A path parameter that is not an id: a 400 problem naming the parameter.
pub fn path_id(parameter: &'static str, id: &str) -> Result<(), Problem> {
    check_id(id).map_err(|invalid| {
        Problem::invalid_path(format!("the path parameter `{parameter}` {invalid}")).with("parameter", parameter)
    })
}

/// A body field that is not a valid id or text: a 422 problem naming the field.
pub fn body_field(field: &'static str, checked: Result<(), InvalidInput>) -> Result<(), Problem> {
    checked.map_err(|invalid| Problem::invalid_request(format!("`{field}` {invalid}")).with("field", field))
}

/// The path parameters of a route, or a 400 problem when they cannot be read (a parameter that
/// is not UTF-8 once percent-decoded, `%FF`), instead of axum's plain-text rejection.
#[derive(Debug, Clone)]
pub struct PathParams<T>(pub T);

impl<T, S> FromRequestParts<S> for PathParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(params)) => Ok(Self(params)),
            Err(rejection) => Err(path_rejection(&rejection)),
        }
    }
}

/// The problem for axum's path rejection: 400 for what the client sent, 500 for a route that
/// does not match its extractor (a bug of the service).
fn path_rejection(rejection: &PathRejection) -> Problem {
    if rejection.status().is_server_error() {
        tracing::error!(%rejection, "path parameters do not fit the route");
        return Problem::internal();
    }
    if let PathRejection::FailedToDeserializePathParams(failed) = rejection
        && let ErrorKind::InvalidUtf8InPathParam { key } = failed.kind()
    {
        return Problem::invalid_path(format!("the path parameter `{key}` is not UTF-8 once percent-decoded"))
            .with("parameter", key.as_str());
    }
    Problem::invalid_path(rejection.body_text())
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn ids_are_short_unreserved_ascii() {
        assert_eq!(check_id("acc_0d455f0ba6b14fce9fd20fd2c864e7ce"), Ok(()));
        assert_eq!(check_id("test-sqlite-1-2-nobody"), Ok(()));
        assert_eq!(check_id(""), Err(InvalidInput::Empty));
        assert_eq!(check_id("pay_\0"), Err(InvalidInput::Nul { at: 4 }));
        assert_eq!(check_id("a b"), Err(InvalidInput::BadIdCharacter { found: ' ', at: 1 }));
        assert_eq!(check_id("é"), Err(InvalidInput::BadIdCharacter { found: 'é', at: 0 }));
        assert_eq!(check_id(&"a".repeat(MAX_ID_LEN)), Ok(()));
        assert_eq!(check_id(&"a".repeat(MAX_ID_LEN + 1)), Err(InvalidInput::TooLong { len: 65, max: MAX_ID_LEN }));
    }

    #[test]
    fn texts_have_no_nul_and_a_length_limit() {
        assert_eq!(check_text(""), Ok(()));
        assert_eq!(check_text("returned, damaged ✓"), Ok(()));
        assert_eq!(check_text("a\0"), Err(InvalidInput::Nul { at: 1 }));
        assert_eq!(check_text(&"é".repeat(MAX_TEXT_LEN)), Ok(()));
        assert!(matches!(check_text(&"x".repeat(MAX_TEXT_LEN + 1)), Err(InvalidInput::TooLong { .. })));
    }

    #[test]
    fn refusals_name_the_parameter_or_field() {
        let problem = path_id("id", "a\0").unwrap_err();
        assert_eq!((problem.status, problem.slug), (StatusCode::BAD_REQUEST, "invalid-path"));
        assert_eq!(problem.extensions["parameter"], "id");
        let problem = body_field("account_id", check_id("")).unwrap_err();
        assert_eq!((problem.status, problem.slug), (StatusCode::UNPROCESSABLE_ENTITY, "invalid-request"));
        assert_eq!(problem.extensions["field"], "account_id");
    }
}
