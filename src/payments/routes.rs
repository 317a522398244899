//! The HTTP routes and their handlers.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fsm_runtime::outbox::{Outbox as _, OutboxMessage};
use fsm_runtime::sql::SqlTx;
use fsm_runtime::store::{CreateOutcome, NewEntity};
use fsm_runtime::{IdempotencyKey, Keys as _, Once, Outcome, StateMachine, Store, TransitionRequest, sqlx};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::keys::{fingerprint, idempotency_key, json_response};
use super::validate::{PathParams, body_field, check_id, check_text, path_id};
use super::{
    InsufficientFunds, Ledger, PaymentEvent, PaymentRow, PaymentService, PaymentState, PaymentView, Problem, RECEIPTS,
    StoredResponse, UnknownAccount, capture_receipt,
};

/// The API of `service`.
pub(super) fn router<B: Ledger>(service: PaymentService<B>) -> Router {
    Router::new()
        .route("/accounts", post(open_account::<B>))
        .route("/accounts/{id}", get(read_account::<B>))
        .route("/payments", post(create_payment::<B>))
        .route("/payments/{id}", get(read_payment::<B>))
        .route("/payments/{id}/{action}", post(fire_action::<B>))
        .route("/metrics", get(super::metrics::render::<B>))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(service)
}

/// `POST /accounts` body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    /// The opening balance, in minor units.
    balance: i64,
}

/// `POST /payments` body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPayment {
    account_id: String,
    /// In minor units, more than zero.
    amount: i64,
}

/// An account as the API shows it.
#[derive(Debug, Serialize)]
struct AccountView {
    id: String,
    balance: i64,
}

/// `GET /payments/{id}`: the payment and its history.
#[derive(Debug, Serialize)]
struct PaymentDetail {
    id: String,
    account_id: String,
    amount: i64,
    state: String,
    version: i64,
    history: Vec<HistoryView>,
}

/// One applied transition of a payment.
#[derive(Debug, Serialize)]
struct HistoryView {
    version: i64,
    from: &'static str,
    to: &'static str,
    event: Option<String>,
    at_micros: i64,
    /// The reason the request gave, if any.
    reason: Option<String>,
    /// The `Idempotency-Key` of the request that applied it.
    idempotency_key: Option<String>,
}

/// The body of a transition: none, `{}`, or a reason (logged, and put in a refund's receipt).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransitionBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Parses a JSON body: a syntax error is 400, JSON that is not the expected request is 422.
/// An empty body reads as `{}` where `empty_is_object`.
fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>, empty_is_object: bool) -> Result<T, Problem> {
    let body = body.map_err(|rejection| {
        Problem::new(rejection.status(), "unreadable-body", "Request body cannot be read", rejection.body_text())
    })?;
    let text: &[u8] = if empty_is_object && body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &body };
    serde_json::from_slice(text).map_err(|error| match error.classify() {
        serde_json::error::Category::Data => Problem::invalid_request(error.to_string()),
        _ => Problem::malformed_json(error.to_string()),
    })
}

/// A new id: a prefix and a random UUID.
fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// The service's own statements failing: 503 with `Retry-After` when the failure is transient
/// (a pool timeout, a lost connection, a deadlock), else 500.
fn database(error: sqlx::Error) -> Problem {
    Problem::from_store(&fsm_runtime::Error::Database {
        machine: "Payment",
        table: "payments".to_owned(),
        retryable: fsm_runtime::sql::is_transient(&error),
        source: Box::new(error),
    })
}

/// The response of a keyed operation, first time or replayed.
fn stored(once: Once<StoredResponse>, key: &IdempotencyKey, what: &str) -> Response {
    let replayed = once.is_replay();
    let response = once.into_inner();
    tracing::info!(%key, status = response.status, replayed, "{what}");
    response.into_response(replayed)
}

async fn open_account<B: Ledger>(
    State(service): State<PaymentService<B>>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers)?;
    let request: NewAccount = parse_body(body, false)?;
    if request.balance < 0 {
        return Err(Problem::invalid_request("`balance` must be zero or more").with("field", "balance"));
    }
    let fingerprint = fingerprint("POST", uri.path(), &request)?;
    let id = new_id("acc");
    let once = service
        .store()
        .keys()
        .run_once(key.clone(), fingerprint, move |tx: &mut SqlTx<B>| {
            Box::pin(async move {
                B::insert_account(&mut **tx, &id, request.balance).await?;
                let location = Some(format!("/accounts/{id}"));
                Ok(StoredResponse::json(StatusCode::CREATED, location, &AccountView { id, balance: request.balance })?)
            })
        })
        .await?;
    Ok(stored(once, &key, "account opened"))
}

async fn read_account<B: Ledger>(
    State(service): State<PaymentService<B>>,
    PathParams(id): PathParams<String>,
) -> Result<Response, Problem> {
    path_id("id", &id)?;
    let balance = service.balance(&id).await.map_err(database)?.ok_or_else(|| Problem::not_found("account", &id))?;
    Ok(json_response(StatusCode::OK, &AccountView { id, balance }, false))
}

async fn create_payment<B: Ledger>(
    State(service): State<PaymentService<B>>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers)?;
    let request: NewPayment = parse_body(body, false)?;
    body_field("account_id", check_id(&request.account_id))?;
    if request.amount <= 0 {
        return Err(Problem::invalid_request("`amount` must be more than zero").with("field", "amount"));
    }
    let fingerprint = fingerprint("POST", uri.path(), &request)?;
    let id = new_id("pay");
    let store = service.store().clone();
    // The payment row and the key are written in one transaction: a retry finds the key and
    // gets the same payment back, never a second one. The store writes the row's state and
    // version; the payment's own columns come with it.
    let once = service
        .store()
        .keys()
        .run_once(key.clone(), fingerprint, move |tx: &mut SqlTx<B>| {
            Box::pin(async move {
                let NewPayment { account_id, amount } = request;
                if B::account_balance(&mut **tx, &account_id).await?.is_none() {
                    return Err(UnknownAccount(account_id).into());
                }
                let payment =
                    NewEntity::new(id.as_str()).column("account_id", account_id.as_str()).column("amount", amount);
                let state = match store.create_with_on(&mut **tx, payment).await? {
                    CreateOutcome::Created { state } => state,
                    CreateOutcome::AlreadyExists { .. } => return Err(format!("payment id `{id}` is taken").into()),
                };
                let view = PaymentView { id: id.clone(), account_id, amount, state: state.as_str(), version: 0 };
                Ok(StoredResponse::json(StatusCode::CREATED, Some(format!("/payments/{id}")), &view)?)
            })
        })
        .await?;
    Ok(stored(once, &key, "payment created"))
}

async fn read_payment<B: Ledger>(
    State(service): State<PaymentService<B>>,
    PathParams(id): PathParams<String>,
) -> Result<Response, Problem> {
    path_id("id", &id)?;
    let payment = service.payment(&id).await.map_err(database)?.ok_or_else(|| Problem::not_found("payment", &id))?;
    let history = service.store().history(id.as_str()).await?;
    let history = history
        .iter()
        .map(|entry| HistoryView {
            version: entry.version,
            from: entry.from.as_str(),
            to: entry.to.as_str(),
            event: entry.event.clone(),
            at_micros: entry.at_micros,
            reason: entry.reason.clone(),
            idempotency_key: entry.idempotency_key.clone(),
        })
        .collect();
    let PaymentRow { id, account_id, amount, state, version } = payment;
    let body = PaymentDetail { id, account_id, amount, state, version, history };
    Ok(json_response(StatusCode::OK, &body, false))
}

/// The capture request's key, fingerprint and reason, for the capture through the processor.
pub(super) struct KeyedCapture {
    pub(super) key: IdempotencyKey,
    pub(super) fingerprint: fsm_runtime::Fingerprint,
    pub(super) reason: Option<String>,
}

/// What a transition request carries, checked before the payment is read.
struct TransitionCall {
    id: String,
    path: String,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
}

/// `POST /payments/{id}/{action}`: `authorize`, `capture`, `refund` or `cancel`; any other
/// action is an unknown route (404).
async fn fire_action<B: Ledger>(
    State(service): State<PaymentService<B>>,
    PathParams((id, action)): PathParams<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let event = match action.as_str() {
        "authorize" => PaymentEvent::Authorize,
        "capture" => PaymentEvent::Capture,
        "refund" => PaymentEvent::Refund,
        "cancel" => PaymentEvent::Cancel,
        _ => return Err(no_route(uri).await),
    };
    path_id("id", &id)?;
    let call = TransitionCall { id, path: uri.path().to_owned(), headers, body };
    transition(&service, call, event).await
}

/// Fires `event` on the payment, keyed by the request's `Idempotency-Key`, with the money
/// movement and the receipt as effects in the transition's transaction.
async fn transition<B: Ledger>(
    service: &PaymentService<B>,
    call: TransitionCall,
    event: PaymentEvent,
) -> Result<Response, Problem> {
    let TransitionCall { id, path, headers, body } = call;
    let key = idempotency_key(&headers)?;
    let request: TransitionBody = parse_body(body, true)?;
    if let Some(reason) = &request.reason {
        body_field("reason", check_text(reason))?;
    }
    let fingerprint = fingerprint("POST", &path, &request)?;
    let payment = service.payment(&id).await.map_err(database)?.ok_or_else(|| Problem::not_found("payment", &id))?;
    if let (PaymentEvent::Capture, Some(_)) = (event, service.processor()) {
        let keyed = KeyedCapture { key, fingerprint, reason: request.reason };
        return super::capture::through_processor(service, payment, keyed).await;
    }
    let event_name = PaymentState::event_name(event);

    let mut keyed = TransitionRequest::fire(id.as_str(), event).idempotency_key(key.clone(), fingerprint);
    if let Some(reason) = &request.reason {
        // In the history row, next to the key that applied it: the audit trail.
        keyed = keyed.reason(reason.clone());
    }
    let (payment_id, account_id, amount) = (payment.id.clone(), payment.account_id.clone(), payment.amount);
    let reason = request.reason.clone();
    let keyed = match event {
        // The debit is conditional: 0 rows means the balance is too low, and the effect's
        // error rolls the capture back.
        PaymentEvent::Capture => keyed.effect(move |tx: &mut SqlTx<B>| {
            Box::pin(async move {
                if B::debit(&mut **tx, &account_id, amount).await? == 0 {
                    return Err(InsufficientFunds { account_id, amount }.into());
                }
                tx.enqueue(capture_receipt(&payment_id, &account_id, amount)).await?;
                Ok(())
            })
        }),
        PaymentEvent::Refund => keyed.effect(move |tx: &mut SqlTx<B>| {
            Box::pin(async move {
                if B::credit(&mut **tx, &account_id, amount).await? != 1 {
                    return Err(format!("account `{account_id}` of a captured payment is gone").into());
                }
                let receipt = json!({
                    "kind": "refund", "payment_id": payment_id, "account_id": account_id, "amount": amount, "reason": reason,
                });
                tx.enqueue(OutboxMessage::new(RECEIPTS, receipt).with_key(payment_id)).await?;
                Ok(())
            })
        }),
        // The authorization expires: `expire` is scheduled in the same transaction.
        PaymentEvent::Authorize => keyed.schedule(PaymentEvent::Expire, service.authorization_ttl()),
        // `charge` is the capture through the processor (above); `confirm` and `decline`
        // record its answer, never fired by a request.
        PaymentEvent::Cancel
        | PaymentEvent::Expire
        | PaymentEvent::Charge
        | PaymentEvent::Confirm
        | PaymentEvent::Decline => keyed,
    };

    let view = |state: PaymentState, version: i64| PaymentView::of(&payment, state, version);
    match service.store().apply(keyed).await {
        Ok(Outcome::Applied { from, to, version }) => {
            tracing::info!(payment = %id, event = event_name, from = from.as_str(), to = to.as_str(), version, %key, reason = request.reason, "transition applied");
            Ok(json_response(StatusCode::OK, &view(to, version), false))
        }
        Ok(Outcome::Replayed { from, to, version }) => {
            tracing::info!(payment = %id, event = event_name, from = from.as_str(), to = to.as_str(), version, %key, "transition replayed");
            Ok(json_response(StatusCode::OK, &view(to, version), true))
        }
        Ok(Outcome::AlreadyApplied { state, version }) => {
            tracing::info!(payment = %id, event = event_name, state = state.as_str(), version, %key, "transition already applied (a no-op)");
            Ok(json_response(StatusCode::OK, &view(state, version), false))
        }
        Ok(other) => {
            tracing::error!(payment = %id, event = event_name, ?other, "unexpected outcome");
            Err(Problem::internal())
        }
        Err(error) => {
            tracing::info!(payment = %id, event = event_name, %key, %error, "transition refused");
            Err(Problem::from_store(&error).with("payment_id", id))
        }
    }
}

async fn no_route(uri: Uri) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "no-such-route",
        "No such route",
        format!("nothing is served at `{}`", uri.path()),
    )
}

async fn method_not_allowed(uri: Uri) -> impl IntoResponse {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        format!("`{}` does not take this method", uri.path()),
    )
}
