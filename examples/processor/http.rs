//! The HTTP side: `POST /charges` and `GET /charges` over a shared [`Ledger`].

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use crate::charges::{Admission, Charge, ChargeRequest, Decline, Ledger, Outcome, Settlement};

/// The request header naming an operation (IETF `draft-ietf-httpapi-idempotency-key-header`).
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The response header of an answer given again for a key already used (as Stripe does).
const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// What the handlers share: the ledger and the delays.
#[derive(Debug, Clone)]
pub struct App {
    ledger: Arc<Mutex<Ledger>>,
    latency: Duration,
    timeout_delay: Duration,
}

impl App {
    /// The handlers' state over `ledger`; `latency` before each first request of a key ends,
    /// `timeout_delay` before the answer of a charge picked to time out.
    pub fn new(ledger: Ledger, latency: Duration, timeout_delay: Duration) -> Self {
        Self { ledger: Arc::new(Mutex::new(ledger)), latency, timeout_delay }
    }

    /// The ledger, locked. No update panics halfway, so a poisoned lock still holds a
    /// consistent ledger.
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The routes: `POST /charges`, `GET /charges`.
pub fn router(app: App) -> Router {
    Router::new().route("/charges", post(create_charge).get(list_charges)).with_state(app)
}

/// `GET /charges`: every charge ever made, oldest first.
async fn list_charges(State(app): State<App>) -> Json<Vec<Charge>> {
    Json(app.ledger().charges().to_vec())
}

/// `POST /charges`: charges once per `Idempotency-Key`, however often the request comes.
async fn create_charge(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Result<Response, BadRequest> {
    let key = idempotency_key(&headers)?;
    let request = charge_request(&body)?;
    // Bound first: a guard in the `match` scrutinee would live across the `.await` below.
    let admission = app.ledger().admit(&key, &request);
    Ok(match admission {
        Admission::Fresh { attempt } => process(&app, Attempt { app: app.clone(), key, attempt }).await,
        Admission::InFlight => in_progress(&key),
        Admission::Replay(outcome) => answer(outcome, true),
        Admission::Mismatch => mismatch(&key),
    })
}

/// A fresh request being processed; dropped before it is settled (the client went away
/// during the latency), it frees its key: nothing was charged.
struct Attempt {
    app: App,
    key: String,
    attempt: u64,
}

impl Drop for Attempt {
    fn drop(&mut self) {
        // A no-op once settled: the key is then no longer in flight for this attempt.
        self.app.ledger().abandon(&self.key, self.attempt);
    }
}

/// Waits the latency, then fails, declines or charges; a charge picked to time out is
/// answered only after the timeout delay (it stands, whether the client waits or not).
async fn process(app: &App, attempt: Attempt) -> Response {
    tokio::time::sleep(app.latency).await;
    let settlement = app.ledger().settle(&attempt.key, attempt.attempt);
    drop(attempt);
    match settlement {
        Some(Settlement::Recorded { outcome, late }) => {
            if late {
                tokio::time::sleep(app.timeout_delay).await;
            }
            answer(outcome, false)
        }
        Some(Settlement::Failed) | None => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "processor_error", "message": "the processor failed; nothing was charged, retry with the same key"}),
        ),
    }
}

/// The answer of an outcome: 201 (200 when replayed) with the charge, or 402 for a decline;
/// a replay has `Idempotent-Replayed: true`.
fn answer(outcome: Outcome, replayed: bool) -> Response {
    let mut response = match outcome {
        Outcome::Charged(charge) if replayed => (StatusCode::OK, Json(charge)).into_response(),
        Outcome::Charged(charge) => (StatusCode::CREATED, Json(charge)).into_response(),
        Outcome::Declined(decline) => declined(&decline),
    };
    if replayed {
        response.headers_mut().insert(HeaderName::from_static(IDEMPOTENT_REPLAYED), HeaderValue::from_static("true"));
    }
    response
}

/// 402 `card_declined`.
fn declined(decline: &Decline) -> Response {
    error(
        StatusCode::PAYMENT_REQUIRED,
        json!({
            "error": "card_declined",
            "message": "the card was declined (this processor declines every amount ending in 51)",
            "idempotency_key": decline.idempotency_key,
            "payment_id": decline.payment_id,
            "amount": decline.amount,
        }),
    )
}

/// 409 with `Retry-After: 1`: the key's first request is still being processed.
fn in_progress(key: &str) -> Response {
    let mut response = error(
        StatusCode::CONFLICT,
        json!({
            "error": "request_in_progress",
            "message": format!("a request with Idempotency-Key `{key}` is still being processed; retry later"),
            "idempotency_key": key,
        }),
    );
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// 422: the key was used with another body.
fn mismatch(key: &str) -> Response {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({
            "error": "idempotency_key_reused",
            "message": format!("Idempotency-Key `{key}` was used with another amount or payment_id"),
            "idempotency_key": key,
        }),
    )
}

/// The `Idempotency-Key` header, or a 400 when it is missing, empty or not visible ASCII.
fn idempotency_key(headers: &HeaderMap) -> Result<String, BadRequest> {
    let key = headers.get(IDEMPOTENCY_KEY).and_then(|value| value.to_str().ok()).map(str::trim).unwrap_or("");
    if key.is_empty() {
        return Err(bad_request(
            "missing_idempotency_key",
            "an Idempotency-Key header (visible ASCII, not empty) is required",
        ));
    }
    Ok(key.to_owned())
}

/// The body, or a 400 when it is not JSON, lacks a field or has a non-positive amount.
fn charge_request(body: &[u8]) -> Result<ChargeRequest, BadRequest> {
    let request: ChargeRequest = serde_json::from_slice(body).map_err(|e| bad_request("invalid_request", e))?;
    if request.amount <= 0 {
        return Err(bad_request("invalid_request", "amount must be a positive integer (minor units)"));
    }
    Ok(request)
}

/// A request refused before its key is looked up: 400 with an error code and a message.
#[derive(Debug)]
struct BadRequest {
    code: &'static str,
    message: String,
}

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, json!({"error": self.code, "message": self.message}))
    }
}

/// A [`BadRequest`] with `code` and `message`.
fn bad_request(code: &'static str, message: impl std::fmt::Display) -> BadRequest {
    BadRequest { code, message: message.to_string() }
}

/// A JSON error body with a status.
fn error(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}
