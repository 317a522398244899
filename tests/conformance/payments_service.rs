//! The payment service of `examples/payments`, started in process on a free loopback port and
//! driven over real HTTP (reqwest), on SQLite, PostgreSQL and MariaDB.
//!
//! What is checked: 50 concurrent identical captures with one key debit once and all get the
//! same response (49 marked replayed); 50 captures of 50 payments with 50 keys debit until the
//! balance is exhausted and never below zero; a replay after a restart returns the stored
//! response; a missing key is 400, a reused key 422, bad JSON 400, an unknown id 404 and an
//! illegal transition 409, each with an `application/problem+json` body; a NUL in a path id, a
//! path parameter that is not UTF-8 (`%FF`) and an overlong id are 400 naming the parameter, a
//! NUL in a body field 422 naming the field, before any SQL; a database's data exception
//! (SQLSTATE class 22) is a 422 problem, not a 500 or a 503; an authorization expires (voided)
//! once a scheduler's `ManualClock` passes its TTL.

use std::future::Future;
use std::time::Duration;

use crate::fixture::backends::{mysql_pool, postgres_pool};
use fsm_runtime::sqlx;
use fsm_runtime::timer::{ManualClock, SchedulerReport};
use fsm_suite::payments::{self, Ledger, PaymentService};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The whole scenario must end within this.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

use crate::fixture::service::Server;

/// A response, as a test looks at it.
#[derive(Debug, Clone, PartialEq)]
struct Reply {
    status: StatusCode,
    replayed: bool,
    content_type: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn id(&self) -> String {
        self.json()["id"].as_str().unwrap_or_else(|| panic!("no id in {}", self.body)).to_owned()
    }

    /// Asserts an RFC 9457 problem of `status` whose type ends with `slug`.
    fn assert_problem(&self, status: StatusCode, slug: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.content_type, "application/problem+json", "{}", self.body);
        let problem = self.json();
        assert_eq!(problem["status"], status.as_u16(), "{}", self.body);
        let kind = problem["type"].as_str().unwrap_or_default();
        assert!(kind.ends_with(&format!("/{slug}")), "expected a `{slug}` problem, got {}", self.body);
        assert!(problem["title"].is_string() && problem["detail"].is_string(), "{}", self.body);
    }

    /// Asserts a 400 `invalid-path` problem naming the path parameter `parameter`.
    fn assert_bad_path(&self, parameter: &str) {
        self.assert_problem(StatusCode::BAD_REQUEST, "invalid-path");
        assert_eq!(self.json()["parameter"], parameter, "{}", self.body);
    }

    /// Asserts a 422 `invalid-request` problem naming the body field `field`.
    fn assert_bad_field(&self, field: &str) {
        self.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-request");
        assert_eq!(self.json()["field"], field, "{}", self.body);
    }
}

/// A client of one server.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    fn new(server: &Server) -> Self {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("a client");
        Self { client, base: server.base.clone() }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("the service answers");
        let status = response.status();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let replayed = header("idempotent-replayed").as_deref() == Some("true");
        let content_type = header("content-type").unwrap_or_default();
        let body = response.text().await.expect("a body");
        Reply { status, replayed, content_type, body }
    }

    /// `POST path` with an `Idempotency-Key` (as a structured-field string) and a raw body.
    async fn post(&self, path: &str, key: Option<&str>, body: &str) -> Reply {
        let mut request = self.client.post(format!("{}{path}", self.base)).body(body.to_owned());
        request = request.header("content-type", "application/json");
        if let Some(key) = key {
            request = request.header("idempotency-key", format!("\"{key}\""));
        }
        self.send(request).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(self.client.get(format!("{}{path}", self.base))).await
    }

    async fn open_account(&self, key: &str, balance: i64) -> String {
        let reply = self.post("/accounts", Some(key), &json!({ "balance": balance }).to_string()).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.id()
    }

    async fn authorized_payment(&self, key: &str, account: &str, amount: i64) -> String {
        let body = json!({ "account_id": account, "amount": amount }).to_string();
        let created = self.post("/payments", Some(&format!("{key}-create")), &body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let id = created.id();
        let authorized = self.post(&format!("/payments/{id}/authorize"), Some(&format!("{key}-authorize")), "").await;
        assert_eq!(authorized.status, StatusCode::OK, "{}", authorized.body);
        assert_eq!(authorized.json()["state"], "authorized");
        id
    }
}

/// A prefix no other run uses, for idempotency keys on a shared database.
fn run_prefix(backend: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("test-{backend}-{}-{nanos}", std::process::id())
}

async fn balance<B: Ledger>(service: &PaymentService<B>, account: &str) -> i64 {
    service.balance(account).await.expect("read the balance").expect("the account exists")
}

/// The scenario on one database; `pool` opens a new pool on it (for the restart).
async fn scenario<B, F, Fut>(backend: &str, pool: F)
where
    B: Ledger,
    F: Fn() -> Fut,
    Fut: Future<Output = sqlx::Pool<B>>,
{
    let run = run_prefix(backend);
    let service = PaymentService::<B>::new(pool().await).await.expect("create the tables");
    let server = Server::start(service.clone()).await;
    let api = Api::new(&server);

    // Accounts: created once per key.
    let account = api.open_account(&format!("{run}-acc"), 10_000).await;
    let again = api.post("/accounts", Some(&format!("{run}-acc")), r#"{"balance": 10000}"#).await;
    assert_eq!((again.status, again.replayed, again.id()), (StatusCode::CREATED, true, account.clone()));
    assert_eq!(api.get(&format!("/accounts/{account}")).await.json()["balance"], 10_000);

    // Missing key, bad JSON, reused key, unknown ids, an unknown account.
    let new_payment = json!({ "account_id": account, "amount": 1_000 }).to_string();
    api.post("/payments", None, &new_payment).await.assert_problem(StatusCode::BAD_REQUEST, "idempotency-key-missing");
    api.post("/payments", Some(&format!("{run}-bad")), "{\"account_id\": ")
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "malformed-json");
    api.post("/payments", Some(&format!("{run}-bad")), r#"{"amount": "ten"}"#)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-request");
    let unknown_account = json!({ "account_id": "acc_nobody", "amount": 1_000 }).to_string();
    api.post("/payments", Some(&format!("{run}-nobody")), &unknown_account)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "unknown-account");
    let first = api.post("/payments", Some(&format!("{run}-p1")), &new_payment).await;
    assert_eq!((first.status, first.replayed), (StatusCode::CREATED, false), "{}", first.body);
    let payment = first.id();
    let replay = api.post("/payments", Some(&format!("{run}-p1")), &new_payment).await;
    assert_eq!((replay.status, replay.replayed, &replay.body), (StatusCode::CREATED, true, &first.body));
    // Requests with a key still in flight wait for the first and get its response.
    let racing_key = format!("{run}-p-race");
    let creates: Vec<_> = (0..20)
        .map(|_| {
            let (api, key, body) = (api.clone(), racing_key.clone(), new_payment.clone());
            tokio::spawn(async move { api.post("/payments", Some(&key), &body).await })
        })
        .collect();
    let mut created = Vec::new();
    for create in creates {
        created.push(create.await.expect("a create task"));
    }
    assert_eq!(created.iter().filter(|r| r.replayed).count(), 19, "one payment created, 19 replays");
    assert!(created.iter().all(|r| r.status == StatusCode::CREATED && r.body == created[0].body));
    let other_body = json!({ "account_id": account, "amount": 2_000 }).to_string();
    api.post("/payments", Some(&format!("{run}-p1")), &other_body)
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused");
    api.post("/payments/pay_nope/capture", Some(&format!("{run}-nope")), "")
        .await
        .assert_problem(StatusCode::NOT_FOUND, "not-found");
    api.get("/payments/pay_nope").await.assert_problem(StatusCode::NOT_FOUND, "not-found");
    api.get(&format!("/accounts/{run}-nobody")).await.assert_problem(StatusCode::NOT_FOUND, "not-found");
    api.get("/nowhere").await.assert_problem(StatusCode::NOT_FOUND, "no-such-route");

    // Bad ids and strings are refused before any SQL (PostgreSQL would fail on a NUL with
    // SQLSTATE 22021): a problem naming the path parameter (400) or the body field (422).
    api.get(&format!("/payments/{payment}%00")).await.assert_bad_path("id");
    api.get("/accounts/acc%00x").await.assert_bad_path("id");
    api.post(&format!("/payments/{payment}%00/capture"), Some(&format!("{run}-nul-path")), "")
        .await
        .assert_bad_path("id");
    api.get(&format!("/payments/{}", "p".repeat(65))).await.assert_bad_path("id");
    let nul_account = json!({ "account_id": format!("{account}\u{0}"), "amount": 1_000 }).to_string();
    api.post("/payments", Some(&format!("{run}-nul-account")), &nul_account).await.assert_bad_field("account_id");
    let empty_account = json!({ "account_id": "", "amount": 1_000 }).to_string();
    api.post("/payments", Some(&format!("{run}-empty-account")), &empty_account).await.assert_bad_field("account_id");
    api.post(&format!("/payments/{payment}/cancel"), Some(&format!("{run}-nul-reason")), r#"{"reason": "a\u0000b"}"#)
        .await
        .assert_bad_field("reason");
    // Not UTF-8 once percent-decoded: a problem body, not axum's plain-text 400.
    api.get("/payments/%FF").await.assert_bad_path("id");
    api.get("/accounts/acc_%FF%FE").await.assert_bad_path("id");
    api.post("/payments/%FF/capture", Some(&format!("{run}-ff-id")), "").await.assert_bad_path("id");
    api.post(&format!("/payments/{payment}/%FF"), Some(&format!("{run}-ff-action")), "")
        .await
        .assert_bad_path("action");
    let unharmed = api.get(&format!("/payments/{payment}")).await.json();
    assert_eq!((unharmed["state"].clone(), unharmed["version"].clone()), (json!("created"), json!(0)));

    // Illegal transitions: refund and capture before authorisation.
    let path = |action: &str| format!("/payments/{payment}/{action}");
    api.post(&path("refund"), Some(&format!("{run}-early-refund")), "")
        .await
        .assert_problem(StatusCode::CONFLICT, "illegal-transition");
    api.post(&path("capture"), Some(&format!("{run}-early-capture")), "{}")
        .await
        .assert_problem(StatusCode::CONFLICT, "illegal-transition");
    api.post(&path("capture"), Some(&format!("{run}-bad-capture")), "{")
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "malformed-json");
    let authorized = api.post(&path("authorize"), Some(&format!("{run}-authorize")), "").await;
    assert_eq!((authorized.status, authorized.json()["state"].clone()), (StatusCode::OK, json!("authorized")));

    // 50 concurrent identical captures with one key: one debit, one receipt, one response.
    let capture_key = format!("{run}-capture");
    let captures: Vec<_> = (0..50)
        .map(|_| {
            let (api, path, key) = (api.clone(), path("capture"), capture_key.clone());
            tokio::spawn(async move { api.post(&path, Some(&key), "").await })
        })
        .collect();
    let mut replies = Vec::new();
    for capture in captures {
        replies.push(capture.await.expect("a capture task"));
    }
    let captured = replies.iter().find(|r| !r.replayed).expect("one capture that is not a replay").clone();
    assert_eq!(captured.status, StatusCode::OK, "{}", captured.body);
    assert_eq!(captured.json()["state"], "captured");
    assert_eq!(replies.iter().filter(|r| r.replayed).count(), 49);
    for reply in &replies {
        assert_eq!((reply.status, &reply.body), (captured.status, &captured.body));
    }
    assert_eq!(balance(&service, &account).await, 9_000, "debited exactly once");
    assert_eq!(service.receipts_of(&payment).await.expect("count receipts").0, 1, "one receipt");
    // Another request (another key) cannot capture again: capture is strict.
    api.post(&path("capture"), Some(&format!("{run}-capture-2")), "")
        .await
        .assert_problem(StatusCode::CONFLICT, "already-done-by-another-request");
    // The same key on another endpoint is another request.
    api.post(&path("refund"), Some(&capture_key), "")
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused");

    // The relay publishes the receipt (bounded wait).
    let mut published = 0;
    for _ in 0..100 {
        published = service.receipts_of(&payment).await.expect("count receipts").1;
        if published == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(published, 1, "the relay published the receipt");

    // 50 payments of 700 on an account of 10 000, captured concurrently with 50 keys: 14 fit.
    let wallet = api.open_account(&format!("{run}-wallet"), 10_000).await;
    let mut payment_ids = Vec::new();
    for n in 0..50 {
        payment_ids.push(api.authorized_payment(&format!("{run}-many-{n}"), &wallet, 700).await);
    }
    let captures: Vec<_> = payment_ids
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let (api, path, key) = (api.clone(), format!("/payments/{id}/capture"), format!("{run}-many-{n}-capture"));
            tokio::spawn(async move { api.post(&path, Some(&key), "").await })
        })
        .collect();
    let mut ok = 0;
    for capture in captures {
        let reply = capture.await.expect("a capture task");
        if reply.status == StatusCode::OK {
            ok += 1;
        } else {
            reply.assert_problem(StatusCode::CONFLICT, "insufficient-funds");
        }
    }
    let left = balance(&service, &wallet).await;
    assert_eq!(ok, 14, "as many captures as the balance allows");
    assert_eq!(left, 10_000 - 14 * 700, "each capture debited once");
    assert!(left >= 0);
    let mut captured_count = 0;
    for id in &payment_ids {
        let row = service.payment(id).await.expect("read a payment").expect("the payment exists");
        let receipts = service.receipts_of(id).await.expect("count receipts").0;
        match row.state.as_str() {
            "captured" => {
                captured_count += 1;
                assert_eq!(receipts, 1, "a captured payment has one receipt");
            }
            "authorized" => assert_eq!(receipts, 0, "a refused capture left no receipt"),
            other => panic!("payment {id} is {other}"),
        }
    }
    assert_eq!(captured_count, 14);

    // A refund credits back; its replay does not.
    let refund = api.post(&path("refund"), Some(&format!("{run}-refund")), r#"{"reason": "returned"}"#).await;
    assert_eq!((refund.status, refund.json()["state"].clone()), (StatusCode::OK, json!("refunded")));
    let refund_again = api.post(&path("refund"), Some(&format!("{run}-refund")), r#"{"reason":"returned"}"#).await;
    assert_eq!((refund_again.replayed, &refund_again.body), (true, &refund.body), "same JSON, other spacing");
    assert_eq!(balance(&service, &account).await, 10_000);
    let detail = api.get(&format!("/payments/{payment}")).await.json();
    let history: Vec<_> = detail["history"].as_array().expect("a history").iter().map(|e| e["to"].clone()).collect();
    assert_eq!(history, [json!("authorized"), json!("captured"), json!("refunded")]);
    // The audit trail: the refund's reason and the HTTP key that applied it, in its history row.
    let refunded = &detail["history"][2];
    assert_eq!(refunded["reason"], json!("returned"), "{refunded}");
    assert_eq!(refunded["idempotency_key"], json!(format!("{run}-refund")), "{refunded}");
    assert_eq!(detail["history"][1]["idempotency_key"], json!(capture_key), "{detail}");

    // The metrics, in Prometheus text: the contract lines, each with a value.
    let metrics = api.get("/metrics").await;
    assert_eq!((metrics.status, metrics.content_type.as_str()), (StatusCode::OK, payments::PROMETHEUS_TEXT));
    let applied = metric(&metrics.body, r#"fsm_transitions_total{machine="Payment",outcome="applied"}"#);
    assert!(applied >= 15.0, "this run captured 14 payments and refunded one: {applied}\n{}", metrics.body);
    assert!(metric(&metrics.body, "fsm_outbox_pending") >= 0.0);
    assert!(metric(&metrics.body, r#"fsm_transitions_total{machine="Payment",outcome="replayed"}"#) >= 1.0);

    // A restart: the stored responses survive it.
    server.stop().await;
    let service = PaymentService::<B>::new(pool().await).await.expect("the tables exist");
    let server = Server::start(service.clone()).await;
    let api = Api::new(&server);
    let after_restart = api.post(&path("capture"), Some(&capture_key), "").await;
    assert_eq!((after_restart.status, after_restart.replayed), (StatusCode::OK, true));
    assert_eq!(after_restart.body, captured.body, "the stored response, although the payment moved on since");
    let created_again = api.post("/payments", Some(&format!("{run}-p1")), &new_payment).await;
    assert_eq!(
        (created_again.status, created_again.replayed, &created_again.body),
        (StatusCode::CREATED, true, &first.body)
    );
    assert_eq!(balance(&service, &account).await, 10_000, "a replay moves no money");

    // Retention: a purge of older keys keeps this run's; once purged, a key is new again.
    service.purge_keys(Duration::from_secs(3_600)).await.expect("purge keys older than an hour");
    let kept = api.post("/payments", Some(&format!("{run}-p1")), &new_payment).await;
    assert_eq!((kept.replayed, &kept.body), (true, &first.body), "a key younger than the retention is kept");
    let purged = service.purge_keys(Duration::ZERO).await.expect("purge every key");
    assert!(purged >= 8, "this run stored at least 8 keys, purged {purged}");
    let anew = api.post("/payments", Some(&format!("{run}-p1")), &new_payment).await;
    assert_eq!((anew.status, anew.replayed), (StatusCode::CREATED, false), "{}", anew.body);
    assert_ne!(anew.id(), payment, "a purged key creates a new payment");

    // Authorizations expire: `authorize` scheduled `expire` the TTL later, in its transaction;
    // a scheduler whose clock passed it voids the payment. A refunded one stays refunded.
    let expiring = api.authorized_payment(&format!("{run}-expiring"), &account, 100).await;
    let clock = ManualClock::starting_now();
    let scheduler = service.scheduler(clock.clone());
    scheduler.run_once().await.expect("a scheduler pass");
    assert_eq!(api.get(&format!("/payments/{expiring}")).await.json()["state"], "authorized", "not due yet");
    clock.advance(payments::AUTHORIZATION_TTL + Duration::from_secs(1));
    while scheduler.run_once().await.expect("a scheduler pass") != SchedulerReport::default() {}
    let voided = api.get(&format!("/payments/{expiring}")).await.json();
    assert_eq!(voided["state"], "voided", "{voided}");
    assert_eq!(voided["history"][1]["to"], "voided", "{voided}");
    assert_eq!(api.get(&format!("/payments/{payment}")).await.json()["state"], "refunded");
    server.stop().await;
}

/// The value of the sample `name` (with its labels, as rendered) in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    let line = text.lines().find(|line| line.split_once(' ').is_some_and(|(sample, _)| sample == name));
    let value = line.and_then(|line| line.rsplit_once(' ')).map(|(_, value)| value.parse::<f64>());
    match value {
        Some(Ok(value)) => value,
        _ => panic!("no sample `{name}` with a value in:\n{text}"),
    }
}

/// Asserts that the problem for `error`, a driver error of SQLSTATE class 22 (a data
/// exception), is a 422 `invalid-data`, both as a store's database error and as the error of a
/// keyed operation, not a 500 or a 503 that invites retries.
fn assert_data_exception_is_422(error: sqlx::Error, sqlstate: &str) {
    assert_eq!(error.as_database_error().and_then(|e| e.code()).as_deref(), Some(sqlstate), "{error}");
    let error: fsm_runtime::error::BoxError = Box::new(error);
    let store_error = fsm_runtime::Error::Database {
        machine: "Payment",
        table: "payments".to_owned(),
        retryable: false,
        source: error.to_string().into(),
    };
    assert_eq!(
        payments::Problem::from_store(&store_error).status.as_u16(),
        500,
        "a plain message is not a driver error"
    );
    let database = fsm_runtime::Error::Database {
        machine: "Payment",
        table: "payments".to_owned(),
        retryable: false,
        source: error,
    };
    let problem = payments::Problem::from_store(&database);
    assert_eq!((problem.status.as_u16(), problem.slug), (422, "invalid-data"), "{problem:?}");
    assert!(problem.detail.contains(sqlstate), "{problem:?}");
    let fsm_runtime::Error::Database { source, .. } = database else { unreachable!() };
    let failed_work = fsm_runtime::Error::Operation { key: "k".to_owned(), source };
    let problem = payments::Problem::from_store(&failed_work);
    assert_eq!(
        (problem.status.as_u16(), problem.slug, problem.retry_after),
        (422, "invalid-data", None),
        "{problem:?}"
    );
}

/// Runs the scenario with a deadline.
async fn bounded(scenario: impl Future<Output = ()>) {
    tokio::time::timeout(SCENARIO_TIMEOUT, scenario).await.expect("the scenario ends in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payment_service_on_sqlite() {
    let path = std::env::temp_dir().join(format!("{}.db", run_prefix("sqlite")));
    let _leftovers = crate::fixture::Leftovers::sqlite_file(&path);
    let url = format!("sqlite://{}", path.display());
    bounded(scenario::<sqlx::Sqlite, _, _>("sqlite", || async {
        payments::sqlite_pool(&url).await.expect("open the SQLite file")
    }))
    .await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payment_service_on_postgres() {
    let test = "payment_service_on_postgres";
    if postgres_pool(test).await.is_none() {
        return;
    }
    bounded(scenario::<sqlx::Postgres, _, _>("postgres", || async {
        postgres_pool(test).await.expect("PostgreSQL answered a moment ago")
    }))
    .await;
    // What the checks before SQL keep from happening: a NUL in text, SQLSTATE 22021.
    let pool = postgres_pool(test).await.expect("PostgreSQL answered a moment ago");
    let error =
        sqlx::query("SELECT $1::text").bind("a\0b").fetch_one(&pool).await.expect_err("PostgreSQL refuses a NUL");
    assert_data_exception_is_422(error, "22021");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payment_service_on_mariadb() {
    let test = "payment_service_on_mariadb";
    if mysql_pool(test).await.is_none() {
        return;
    }
    bounded(scenario::<sqlx::MySql, _, _>("mariadb", || async {
        mysql_pool(test).await.expect("MariaDB answered a moment ago")
    }))
    .await;
    // A data exception of MariaDB: BIGINT out of range, SQLSTATE 22003.
    let pool = mysql_pool(test).await.expect("MariaDB answered a moment ago");
    let error = sqlx::query("SELECT CAST(? AS SIGNED) + 9223372036854775807")
        .bind(1_i64)
        .fetch_one(&pool)
        .await
        .expect_err("MariaDB refuses an overflow");
    assert_data_exception_is_422(error, "22003");
}

/// `--lock-wait`: a capture whose payment another request holds locked answers at once with
/// `409 request-in-progress` (an RFC 9457 problem), instead of holding a pooled connection
/// until the lock is gone; the same request once the lock is gone captures.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lock_wait_answers_409_on_postgres() {
    use fsm_runtime::Store as _;
    use fsm_runtime::store::LockedEntity as _;

    let test = "lock_wait_answers_409_on_postgres";
    let Some(pool) = postgres_pool(test).await else {
        return;
    };
    bounded(async {
        let run = run_prefix("postgres-lock-wait");
        let service = PaymentService::<sqlx::Postgres>::new(pool).await.expect("create the tables");
        let service = service.with_lock_wait(Duration::from_millis(200));
        let server = Server::start(service.clone()).await;
        let api = Api::new(&server);
        let account = api.open_account(&format!("{run}-acc"), 10_000).await;
        let payment = api.authorized_payment(&format!("{run}-pay"), &account, 2_500).await;
        let held = service.store().lock(payment.as_str()).await.expect("lock the payment");
        let capture = format!("/payments/{payment}/capture");
        let refused = api.post(&capture, Some(&format!("{run}-capture")), "").await;
        refused.assert_problem(StatusCode::CONFLICT, "request-in-progress");
        held.commit().await.expect("give the lock back");
        let captured = api.post(&capture, Some(&format!("{run}-capture")), "").await;
        assert_eq!(captured.status, StatusCode::OK, "{}", captured.body);
        assert_eq!(captured.json()["state"], "captured");
        assert_eq!(balance(&service, &account).await, 7_500);
        server.stop().await;
    })
    .await;
}
