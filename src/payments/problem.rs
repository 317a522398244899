//! Error responses as RFC 9457 problem details (`application/problem+json`), and the mapping
//! from the store's errors to them.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fsm_runtime::Error;
use serde::Serialize;
use serde_json::{Map, Value};

use super::InsufficientFunds;

/// Where the problem types of this service are documented: `type` is this prefix and the
/// problem's slug (`…/insufficient-funds`).
pub const PROBLEM_TYPE_BASE: &str = "https://example.invalid/problems/";

/// The content type of a problem body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem: a status, a type (a slug under [`PROBLEM_TYPE_BASE`]), a title that
/// is the same for every problem of its type, a detail about this occurrence, and extension
/// members.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// The problem type's slug.
    pub slug: &'static str,
    /// A short summary of the problem type.
    pub title: &'static str,
    /// What happened this time.
    pub detail: String,
    /// Extension members (`state`, `payment`, …).
    pub extensions: Map<String, Value>,
    /// Seconds after which a retry may succeed (a `Retry-After` header), for transient errors.
    pub retry_after: Option<u32>,
}

impl Problem {
    /// A problem with no extension members.
    pub fn new(status: StatusCode, slug: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self { status, slug, title, detail: detail.into(), extensions: Map::new(), retry_after: None }
    }

    /// The same problem with an extension member.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(name.to_owned(), value.into());
        self
    }

    /// 400: the request has no `Idempotency-Key` header, or an unusable one.
    pub fn missing_key(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "idempotency-key-missing", "Idempotency-Key header required", detail)
    }

    /// 400: the body is not JSON.
    pub fn malformed_json(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed-json", "Request body is not valid JSON", detail)
    }

    /// 422: the body is JSON, but not a valid request.
    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-request", "Request body is not a valid request", detail)
    }

    /// 400: a path parameter is not valid (not UTF-8 once percent-decoded, not an id).
    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid-path", "A path parameter is not valid", detail)
    }

    /// 422: the database refused a value of the request as data it cannot hold (an SQLSTATE of
    /// class 22, "data exception"): the same request will be refused again, so it is not a
    /// 503. The checks before any SQL should catch such values first; this is the second line.
    pub fn invalid_data(sqlstate: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-data",
            "The database refused a value of the request",
            format!("a value of the request cannot be stored or compared (SQLSTATE {sqlstate})"),
        )
    }

    /// 404: no such resource.
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "No such resource", format!("{what} `{id}` does not exist"))
    }

    /// 500: something the client cannot fix; the detail stays in the log.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the server failed; the error is in its log",
        )
    }

    /// 503: a transient failure that rolled everything back; the same request may be retried.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut problem =
            Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Temporarily unavailable, retry", detail);
        problem.retry_after = Some(1);
        problem
    }

    /// 409 with `Retry-After: 1`: a lock another request holds was not granted within the
    /// service's `--lock-wait` (the same payment, or its `Idempotency-Key`, still at work).
    pub fn request_in_progress(detail: impl Into<String>) -> Self {
        let mut problem = Self::new(StatusCode::CONFLICT, "request-in-progress", "Another request is at work", detail);
        problem.retry_after = Some(1);
        problem
    }

    /// 409 with `Retry-After: 1`: the capture's charge at the processor has no answer yet (the
    /// processor did not answer in time, failed, or another request is making the call); the
    /// same request, with the same `Idempotency-Key`, gets the outcome once it is known.
    pub fn capture_in_progress(detail: impl Into<String>) -> Self {
        let mut problem =
            Self::new(StatusCode::CONFLICT, "capture-in-progress", "The capture is in progress, retry", detail);
        problem.retry_after = Some(1);
        problem
    }

    /// 402: the processor declined the capture's charge (a definite answer: nothing was
    /// debited, and the payment is `declined`).
    pub fn payment_declined(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYMENT_REQUIRED, "payment-declined", "The processor declined the payment", detail)
    }

    /// The JSON body: `type`, `title`, `status`, `detail`, then the extension members.
    pub fn body(&self) -> String {
        #[derive(Serialize)]
        struct Body<'a> {
            r#type: String,
            title: &'a str,
            status: u16,
            detail: &'a str,
            #[serde(flatten)]
            extensions: &'a Map<String, Value>,
        }
        let body = Body {
            r#type: format!("{PROBLEM_TYPE_BASE}{}", self.slug),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            extensions: &self.extensions,
        };
        serde_json::to_string(&body).unwrap_or_else(|_| format!("{{\"status\":{}}}", self.status.as_u16()))
    }

    /// The problem for a store error on payment `id`.
    pub fn from_store(error: &Error) -> Self {
        if let Error::Database { source, .. } = error
            && let Some(sqlstate) = data_exception(source.as_ref())
        {
            tracing::warn!(%error, "the database refused a value of the request");
            return Self::invalid_data(&sqlstate);
        }
        match error {
            Error::NotFound { id, .. } => Self::not_found("payment", &id.to_string()),
            Error::InvalidTransition { from, to, .. } => Self::new(
                StatusCode::CONFLICT,
                "illegal-transition",
                "Not allowed in the payment's state",
                format!("a payment in state `{from}` cannot become `{to}`"),
            )
            .with("state", *from),
            Error::InvalidEvent { state, event, .. } => Self::new(
                StatusCode::CONFLICT,
                "illegal-transition",
                "Not allowed in the payment's state",
                format!("a payment in state `{state}` cannot `{event}`"),
            )
            .with("state", *state),
            Error::ReachedByAnotherRequest { state, .. } => Self::new(
                StatusCode::CONFLICT,
                "already-done-by-another-request",
                "Already done by another request",
                format!("the payment already is `{state}`, by a request with another Idempotency-Key"),
            )
            .with("state", *state),
            Error::IdempotencyKeyReused { key } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused for a different request",
                format!("the key `{key}` was used before with another method, path or body"),
            ),
            Error::InvalidKey(invalid) => Self::missing_key(invalid.to_string()),
            Error::Effect { source, .. } | Error::Operation { source, .. } => Self::from_failed_work(source.as_ref()),
            Error::LockTimeout { .. } => Self::request_in_progress(
                "another request holds this payment or this Idempotency-Key; nothing was done, retry the same request",
            ),
            Error::Database { retryable: true, .. } | Error::Conflict { .. } | Error::VersionConflict { .. } => {
                tracing::warn!(%error, "transient failure");
                Self::unavailable("a transient database failure; nothing was done, retry the same request")
            }
            // The claim of a processor call could not be taken (its lease store failed): nothing
            // was written.
            Error::Claim { .. } if error.is_retryable() => {
                tracing::warn!(%error, "transient failure");
                Self::unavailable("a transient database failure; retry the same request")
            }
            _ => {
                tracing::error!(%error, "request failed");
                Self::internal()
            }
        }
    }

    /// The problem for the error of an effect or a keyed operation: its work was rolled back.
    fn from_failed_work(source: &(dyn std::error::Error + 'static)) -> Self {
        if let Some(short) = source.downcast_ref::<InsufficientFunds>() {
            return Self::new(StatusCode::CONFLICT, "insufficient-funds", "Insufficient funds", short.to_string())
                .with("account_id", short.account_id.clone())
                .with("amount", short.amount);
        }
        if let Some(unknown) = source.downcast_ref::<super::UnknownAccount>() {
            return Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown-account",
                "The request names an account that does not exist",
                unknown.to_string(),
            )
            .with("account_id", unknown.0.clone());
        }
        if let Some(sqlstate) = data_exception(source) {
            tracing::warn!(error = %source, "work rolled back: the database refused a value of the request");
            return Self::invalid_data(&sqlstate);
        }
        // A database failure inside the work: everything was rolled back, so a retry is safe.
        tracing::warn!(error = %source, "work rolled back");
        Self::unavailable("the work failed and was rolled back; retry the same request")
    }
}

/// The SQLSTATE of a PostgreSQL or MySQL/MariaDB error of class 22 ("data exception": a NUL
/// in text `22021`, a string too long `22001`, a number out of range `22003`, …), found in
/// `error` or its chain of sources. SQLite reports result codes, not SQLSTATEs: never one.
fn data_exception(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(fsm_runtime::sqlx::Error::Database(db)) = error.downcast_ref::<fsm_runtime::sqlx::Error>() {
            let sqlstate = |code: &str| (code.len() == 5 && code.starts_with("22")).then(|| code.to_owned());
            if let Some(pg) = db.try_downcast_ref::<fsm_runtime::sqlx::postgres::PgDatabaseError>() {
                return sqlstate(pg.code());
            }
            if let Some(mysql) = db.try_downcast_ref::<fsm_runtime::sqlx::mysql::MySqlDatabaseError>() {
                return mysql.code().and_then(sqlstate);
            }
            return None;
        }
        current = error.source();
    }
    None
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<Error> for Problem {
    fn from(error: Error) -> Self {
        Self::from_store(&error)
    }
}
