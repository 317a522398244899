//! Capturing through a card processor: the capture's outside call ([`ProcessorCall`], the
//! processor's `POST /charges`) run by [`fsm_runtime::outbound`], and its settings
//! ([`ProcessorSettings`]).
//!
//! With a processor, a capture has two phases. The HTTP request moves the payment
//! `authorized` → `capturing` (keyed by the request's `Idempotency-Key`, reserving the amount
//! on the account), then calls the processor with the *outbound key* of that entry
//! (`Payment/<id>/<version>`), the same for every attempt: the HTTP retries, the retries after
//! a restart and the recovery worker's. A 2xx is recorded as `capturing` → `captured` with the
//! debit and the receipt in its transaction, a 402 as `capturing` → `declined` with the
//! reservation released; anything else (a 5xx, a 409, a timeout, a refused connection) is no
//! answer, and the payment stays `capturing` until a later attempt gets one.

use std::sync::Arc;
use std::time::Duration;

use fsm_runtime::lock::SqlLeases;
use fsm_runtime::outbound::{Call, CallOutcome, Outbound, OutboundCall, Recovery};
use fsm_runtime::outbox::Outbox as _;
use fsm_runtime::sql::SqlTx;
use fsm_runtime::store::{EntityId, SqlStore};
use fsm_runtime::{TransitionRequest, sqlx};
use serde_json::json;

use super::{InsufficientFunds, Ledger, PaymentEvent, PaymentState, capture_receipt};

/// How long the service waits for the processor's answer to a charge by default.
pub const PROCESSOR_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a payment stays `capturing` before the recovery worker makes its call again, by
/// default: longer than a call takes, so that the worker does not race the request making it.
pub const RECOVERY_AFTER: Duration = Duration::from_secs(5);

/// How long the recovery worker sleeps after a pass that settled nothing.
pub const RECOVERY_IDLE: Duration = Duration::from_millis(500);

/// What a claim of a payment's call lasts beyond the processor's timeout: the time to record
/// the answer. A process that dies mid-call leaves the payment to others after the claim ran
/// out (its lease, in the service's database).
pub const CLAIM_MARGIN: Duration = Duration::from_secs(3);

/// Where and how the service charges captures (`--processor-url`, `--processor-timeout`,
/// `--recovery-after`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorSettings {
    /// The processor's base URL; charges are `POST {url}/charges`.
    pub url: String,
    /// The client timeout of a charge: past it, the charge has no answer (it may have been
    /// made: the next attempt, with the same key, finds out).
    pub timeout: Duration,
    /// How long a payment stays `capturing` before the recovery worker calls again.
    pub recovery_after: Duration,
}

impl ProcessorSettings {
    /// The processor at `url`, with the default timeout and recovery delay.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), timeout: PROCESSOR_TIMEOUT, recovery_after: RECOVERY_AFTER }
    }

    /// The same, with another client timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same, with another recovery delay.
    pub fn recovery_after(mut self, after: Duration) -> Self {
        self.recovery_after = after;
        self
    }

    /// How long a claim of a payment's call lasts: the timeout and [`CLAIM_MARGIN`].
    pub fn claim(&self) -> Duration {
        self.timeout + CLAIM_MARGIN
    }

    /// `POST` here to charge.
    fn charges_url(&self) -> String {
        format!("{}/charges", self.url.trim_end_matches('/'))
    }
}

/// The phases of a capture through the processor, on database `B`.
pub type PaymentOutbound<B> = Outbound<PaymentState, SqlStore<PaymentState, B>, SqlLeases<B>, ProcessorCall<B>>;

/// The worker that settles the payments left `capturing` (their process died, or the
/// processor did not answer and nobody retried).
pub type PaymentRecovery<B> = Recovery<PaymentState, SqlStore<PaymentState, B>, SqlLeases<B>, ProcessorCall<B>>;

/// Captures through a processor: the settings and the phases, shared by the handlers and the
/// recovery worker of one service.
#[derive(Debug)]
pub struct ProcessorCapture<B: Ledger> {
    settings: ProcessorSettings,
    outbound: Arc<PaymentOutbound<B>>,
}

impl<B: Ledger> Clone for ProcessorCapture<B> {
    fn clone(&self) -> Self {
        Self { settings: self.settings.clone(), outbound: self.outbound.clone() }
    }
}

impl<B: Ledger> ProcessorCapture<B> {
    /// The phases on `store`, with claims in the same database (so that several service
    /// processes on one database never call for one payment at once).
    pub(super) async fn new(
        store: SqlStore<PaymentState, B>,
        settings: ProcessorSettings,
    ) -> Result<Self, fsm_runtime::error::BoxError> {
        let client = reqwest::Client::builder().timeout(settings.timeout).connect_timeout(settings.timeout).build()?;
        let leases = SqlLeases::new(store.pool().clone()).await?;
        let call = ProcessorCall {
            client,
            charges_url: settings.charges_url(),
            timeout: settings.timeout,
            pool: store.pool().clone(),
        };
        let outbound = Outbound::new(store, leases, call).lease(settings.claim());
        Ok(Self { settings, outbound: Arc::new(outbound) })
    }

    /// The settings.
    pub fn settings(&self) -> &ProcessorSettings {
        &self.settings
    }

    /// The phases.
    pub fn outbound(&self) -> &Arc<PaymentOutbound<B>> {
        &self.outbound
    }

    /// The recovery worker of these phases: the payments `capturing` for longer than
    /// [`ProcessorSettings::recovery_after`].
    pub fn recovery(&self) -> PaymentRecovery<B> {
        Recovery::new(self.outbound.clone(), self.settings.recovery_after)
    }
}

/// The capture's outside call: `POST /charges` of the processor with `Idempotency-Key: <the
/// outbound key>` and `{"amount", "payment_id"}`; its recording transition debits the account
/// (charged) or releases the reservation (declined).
pub struct ProcessorCall<B: Ledger> {
    client: reqwest::Client,
    charges_url: String,
    timeout: Duration,
    pool: sqlx::Pool<B>,
}

impl<B: Ledger> std::fmt::Debug for ProcessorCall<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorCall").field("charges_url", &self.charges_url).finish_non_exhaustive()
    }
}

impl<B: Ledger> ProcessorCall<B> {
    /// The amount of payment `id`, read again for each attempt (it never changes).
    async fn amount(&self, id: &str) -> Result<i64, fsm_runtime::error::BoxError> {
        let mut conn = self.pool.acquire().await?;
        let payment = B::read_payment(&mut conn, id).await?;
        Ok(payment.ok_or_else(|| format!("payment `{id}` is gone"))?.amount)
    }
}

impl<B: Ledger> ProcessorCall<B> {
    /// Why a request got no answer, for the log and the 409's detail.
    fn no_answer(&self, error: &reqwest::Error) -> String {
        if error.is_timeout() {
            return format!("no answer from the processor within {:?}", self.timeout);
        }
        let mut text = if error.is_connect() { "cannot reach the processor".to_owned() } else { error.to_string() };
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

impl<B: Ledger> OutboundCall<PaymentState, SqlTx<B>> for ProcessorCall<B> {
    async fn call(&self, call: Call<'_, PaymentState>) -> CallOutcome<PaymentState> {
        let id = call.id.to_string();
        let amount = match self.amount(&id).await {
            Ok(amount) => amount,
            Err(error) => return CallOutcome::Unknown(error),
        };
        let request = self
            .client
            .post(&self.charges_url)
            .header("Idempotency-Key", call.key.as_str())
            .json(&json!({ "amount": amount, "payment_id": id }));
        let response = match request.send().await {
            Ok(response) => response,
            // A timeout, a refused or reset connection: the charge may or may not be made.
            Err(error) => return CallOutcome::Unknown(self.no_answer(&error).into()),
        };
        let status = response.status();
        if status.is_success() {
            // A 2xx is definite, whether or not its body arrives: the charge stands.
            let charge = response.json::<serde_json::Value>().await.ok();
            let charge_id = charge.as_ref().and_then(|charge| charge["id"].as_str()).unwrap_or("?");
            tracing::info!(payment = %id, key = %call.key, charge = charge_id, status = status.as_u16(), "processor charged");
            CallOutcome::Settled(PaymentState::Captured)
        } else if status == reqwest::StatusCode::PAYMENT_REQUIRED {
            tracing::info!(payment = %id, key = %call.key, "processor declined");
            CallOutcome::Settled(PaymentState::Declined)
        } else {
            // A 5xx (nothing charged, or unknown), a 409 (the key's first request is still
            // being processed), or a 4xx this service never provokes: no definite answer.
            let body = response.text().await.unwrap_or_default();
            let detail = format!("the processor answered {status}: {}", body.trim());
            if status.is_client_error() && status != reqwest::StatusCode::CONFLICT {
                tracing::error!(payment = %id, key = %call.key, %detail, "processor refused the charge request");
            }
            CallOutcome::Unknown(detail.into())
        }
    }

    fn settle<'a>(
        &'a self,
        id: EntityId,
        from: PaymentState,
        to: PaymentState,
    ) -> TransitionRequest<'a, PaymentState, SqlTx<B>> {
        let payment_id = id.to_string();
        let request = match to {
            PaymentState::Captured => TransitionRequest::fire(id, PaymentEvent::Confirm),
            PaymentState::Declined => TransitionRequest::fire(id, PaymentEvent::Decline),
            _ => TransitionRequest::from(id, from, to),
        };
        request.actor("processor").effect(move |tx: &mut SqlTx<B>| {
            Box::pin(async move {
                let payment = B::read_payment(&mut **tx, &payment_id)
                    .await?
                    .ok_or_else(|| format!("payment `{payment_id}` is gone"))?;
                let (account_id, amount) = (payment.account_id, payment.amount);
                match to {
                    // The amount was reserved when the capture started: the debit fits.
                    PaymentState::Captured => {
                        if B::debit_reserved(&mut **tx, &account_id, amount).await? == 0 {
                            return Err(InsufficientFunds { account_id, amount }.into());
                        }
                        tx.enqueue(capture_receipt(&payment_id, &account_id, amount)).await?;
                    }
                    PaymentState::Declined => {
                        B::release(&mut **tx, &account_id, amount).await?;
                    }
                    _ => {}
                }
                Ok(())
            })
        })
    }
}
