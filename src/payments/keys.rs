//! The `Idempotency-Key` request header (IETF httpapi draft "The Idempotency-Key HTTP Header
//! Field"), the request's fingerprint, and responses stored under a key and replayed.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fsm_runtime::{Fingerprint, IdempotencyKey};
use serde::{Deserialize, Serialize};

use super::problem::Problem;

/// The request header carrying the key.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The response header set on a replayed response: `Idempotent-Replayed: true`.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The key of a request: the draft's form is a structured-field string,
/// `Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324"`; a bare token
/// (`Idempotency-Key: 8e03978e-…`) is accepted too and means the same key.
///
/// A missing, empty or unreadable key is a 400 problem.
pub fn idempotency_key(headers: &HeaderMap) -> Result<IdempotencyKey, Problem> {
    let mut values = headers.get_all(&IDEMPOTENCY_KEY).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(Problem::missing_key(
            "a POST needs exactly one Idempotency-Key header, for example \
             Idempotency-Key: \"8e03978e-40d5-43e8-bc93-6894a57f9324\"",
        ));
    };
    let text = value.to_str().map_err(|_| Problem::missing_key("the Idempotency-Key is not visible ASCII"))?;
    let key = parse_sf_string(text.trim())
        .ok_or_else(|| Problem::missing_key("the Idempotency-Key is neither a quoted string nor a bare token"))?;
    IdempotencyKey::opaque(key)
        .map_err(|invalid| Problem::missing_key(format!("the Idempotency-Key is unusable: {invalid}")))
}

/// An RFC 8941 string (`"…"` with `\"` and `\\` escapes, printable ASCII), or a bare run of
/// visible ASCII without quotes.
fn parse_sf_string(text: &str) -> Option<String> {
    let Some(inner) = text.strip_prefix('"') else {
        let bare = !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        return bare.then(|| text.to_owned());
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return chars.next().is_none().then_some(out),
            '\\' => match chars.next() {
                Some(escaped @ ('"' | '\\')) => out.push(escaped),
                _ => return None,
            },
            ' '..='~' => out.push(c),
            _ => return None,
        }
    }
    None // no closing quote
}

/// The fingerprint of a request: the method, the path and the parsed body (so that the same
/// JSON with other whitespace or key order is the same request).
pub fn fingerprint<T: Serialize>(method: &str, path: &str, body: &T) -> Result<Fingerprint, Problem> {
    Fingerprint::of(&(method, path, body)).map_err(|error| {
        tracing::error!(%error, "cannot fingerprint a request");
        Problem::internal()
    })
}

/// A response as stored under an idempotency key, to be sent again on a replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// The HTTP status.
    pub status: u16,
    /// A `Location` header, for a created resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The JSON body, as first sent: a replay sends the same bytes.
    pub body: String,
}

impl StoredResponse {
    /// A response with `status` and `body` serialised as JSON.
    pub fn json<T: Serialize>(
        status: StatusCode,
        location: Option<String>,
        body: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self { status: status.as_u16(), location, body: serde_json::to_string(body)? })
    }

    /// The HTTP response: the stored status, `Location` and body, with `Idempotent-Replayed:
    /// true` when this is a replay.
    pub fn into_response(self, replayed: bool) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let mut response = json_text_response(status, self.body, replayed);
        if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        response
    }
}

/// A JSON response, marked as a replay when it is one.
pub fn json_response<T: Serialize>(status: StatusCode, body: &T, replayed: bool) -> Response {
    match serde_json::to_string(body) {
        Ok(text) => json_text_response(status, text, replayed),
        Err(_) => Problem::internal().into_response(),
    }
}

/// A response whose body is JSON text already.
fn json_text_response(status: StatusCode, text: String, replayed: bool) -> Response {
    let mut response = (status, text).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if replayed {
        headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_structured_strings_or_bare_tokens() {
        assert_eq!(parse_sf_string(r#""abc-1""#).as_deref(), Some("abc-1"));
        assert_eq!(parse_sf_string(r#""a \"b\" \\c""#).as_deref(), Some(r#"a "b" \c"#));
        assert_eq!(parse_sf_string("abc-1").as_deref(), Some("abc-1"));
        assert_eq!(parse_sf_string(r#""open"#), None);
        assert_eq!(parse_sf_string(r#""a"b""#), None);
        assert_eq!(parse_sf_string(r#""bad \n escape""#), None);
        assert_eq!(parse_sf_string("two words"), None);
        assert_eq!(parse_sf_string(""), None);
    }

    #[test]
    fn a_missing_or_empty_key_is_refused() {
        let mut headers = HeaderMap::new();
        assert_eq!(idempotency_key(&headers).unwrap_err().status, StatusCode::BAD_REQUEST);
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("\"\""));
        assert_eq!(idempotency_key(&headers).unwrap_err().status, StatusCode::BAD_REQUEST);
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("\"k-1\""));
        assert_eq!(idempotency_key(&headers).unwrap().source(), "k-1");
    }
}
