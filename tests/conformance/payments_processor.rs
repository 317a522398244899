//! The payment service capturing through the fake card processor of `examples/processor`, run
//! as a child process, on SQLite and PostgreSQL (each PostgreSQL run in a schema of its own).
//!
//! What is checked:
//!
//! - under the processor's faults (30 % failures, 20 % answers later than the service's client
//!   timeout), 100 payments captured by a client that retries the same request (same
//!   `Idempotency-Key`) on 409, 5xx and timeouts are all captured, each charged exactly once at
//!   the processor and debited exactly once; a declined amount answers 402 `payment-declined`
//!   (again on a retry), charges and debits nothing; a capture the account cannot pay is refused
//!   before the processor is called; another key on a captured payment is 409;
//! - the service run as a child process, killed with SIGKILL at random moments during 200
//!   captures and restarted on the same database: no payment is charged twice, none stays
//!   `capturing` once the recovery worker had its time (some captures are sent once and
//!   abandoned, for it to finish), and the processor's charges, the captured payments and the
//!   ledger's debits are the same payments;
//! - docs/payment-service.md shows the payment machine as the derive renders it.

use std::collections::HashMap;
use std::future::Future;
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use crate::fixture::backends::{postgres_pool, postgres_url};
use crate::fixture::service::Server;
use fsm_runtime::sqlx;
use fsm_suite::payments::{self, Ledger, PaymentService, PaymentState, ProcessorSettings};
use futures_util::StreamExt as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The balance of every account of these tests.
const INITIAL_BALANCE: i64 = 1_000_000;

/// How long one request is retried before the test gives up on it.
const REQUEST_DEADLINE: Duration = Duration::from_secs(90);

/// The examples' binaries, built once per test run (`CARGO_BIN_EXE_*` does not exist for
/// examples). A failed build is remembered, so that every test reports it without building
/// again.
struct Binaries {
    processor: PathBuf,
    payments: PathBuf,
}

fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Result<Binaries, String>> = OnceLock::new();
    match BINARIES.get_or_init(build_examples) {
        Ok(binaries) => binaries,
        Err(error) => panic!("{error}"),
    }
}

/// `cargo build --example processor --example payments`, and the binaries' paths.
fn build_examples() -> Result<Binaries, String> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(env!("CARGO"))
        .args(["build", "--example", "processor", "--example", "payments", "--quiet"])
        .current_dir(&manifest_dir)
        .status()
        .map_err(|error| format!("cannot run cargo build --example processor --example payments: {error}"))?;
    if !status.success() {
        return Err(format!("cargo build --example processor --example payments: {status}"));
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| manifest_dir.join("target"), PathBuf::from);
    // A relative CARGO_TARGET_DIR is relative to where cargo ran: the manifest directory here.
    let examples = manifest_dir.join(target_dir).join("debug").join("examples");
    let binary = |name: &str| examples.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    Ok(Binaries { processor: binary("processor"), payments: binary("payments") })
}

/// A child process without the proxies of the environment (127.0.0.1 is reached directly).
fn command(binary: &PathBuf) -> Command {
    let mut command = Command::new(binary);
    for proxy in ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"] {
        command.env_remove(proxy);
    }
    command.env_remove("DATABASE_URL").env_remove("PROCESSOR_URL");
    command
}

/// The fake processor, running; killed when dropped.
struct Processor {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    base: String,
}

impl Processor {
    /// Starts the processor with `flags` on a free port, and reads its port from its first line.
    fn start(flags: &[&str]) -> Self {
        let mut child = command(&binaries().processor)
            .args(["--port", "0"])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the processor");
        let stdout = child.stdout.take().expect("the processor's stdout is piped");
        let mut processor = Self { child, base: String::new() };
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the processor's first line");
        processor.base = line
            .trim_end()
            .strip_prefix("processor listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        processor
    }

    /// The charges made, per payment id.
    async fn charges_per_payment(&self) -> HashMap<String, usize> {
        let charges: Vec<Value> = client(Duration::from_secs(10))
            .get(format!("{}/charges", self.base))
            .send()
            .await
            .expect("GET /charges")
            .json()
            .await
            .expect("a JSON array of charges");
        let mut per_payment = HashMap::new();
        for charge in charges {
            let payment = charge["payment_id"].as_str().expect("a payment_id").to_owned();
            *per_payment.entry(payment).or_default() += 1;
        }
        per_payment
    }
}

impl Drop for Processor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client without proxies, giving up after `timeout`.
fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(timeout).build().expect("an HTTP client")
}

/// A prefix no other run uses.
fn run_prefix(backend: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("pp-{backend}-{}-{nanos}", std::process::id())
}

/// A small random number generator (SplitMix64), seeded from the clock.
struct Rng(u64);

impl Rng {
    fn from_clock() -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos());
        Self(nanos as u64 ^ u64::from(std::process::id()))
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % bound.max(1)
    }
}

/// A response, as the driver looks at it.
#[derive(Debug, Clone)]
struct Reply {
    status: StatusCode,
    replayed: bool,
    retry_after: Option<String>,
    body: Value,
}

impl Reply {
    /// The problem type's slug, for a problem body.
    fn slug(&self) -> &str {
        self.body["type"].as_str().and_then(|kind| kind.rsplit('/').next()).unwrap_or_default()
    }

    /// A 409 `capture-in-progress`, a 5xx: the same request is to be sent again.
    fn is_retryable(&self) -> bool {
        self.status.is_server_error() || (self.status == StatusCode::CONFLICT && self.slug() == "capture-in-progress")
    }

    fn state(&self) -> &str {
        self.body["state"].as_str().unwrap_or_default()
    }
}

/// What the retries met.
#[derive(Debug, Default)]
struct Tally {
    in_progress: AtomicUsize,
    server_errors: AtomicUsize,
    transport_errors: AtomicUsize,
    /// Abandoned captures whose one request got no final answer: the recovery's to finish.
    left_to_recovery: AtomicUsize,
}

/// A client of the service, at a base URL that may change (a restarted child on another port).
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: Arc<RwLock<String>>,
    tally: Arc<Tally>,
}

impl Api {
    fn new(base: &str) -> Self {
        Self {
            client: client(Duration::from_secs(10)),
            base: Arc::new(RwLock::new(base.to_owned())),
            tally: Arc::default(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.read().unwrap())
    }

    async fn reply(response: reqwest::Response) -> reqwest::Result<Reply> {
        let status = response.status();
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let replayed = header("idempotent-replayed").as_deref() == Some("true");
        let retry_after = header("retry-after");
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Reply { status, replayed, retry_after, body })
    }

    /// `POST path` once, with `Idempotency-Key: "key"`.
    async fn post(&self, path: &str, key: &str, body: &Value) -> reqwest::Result<Reply> {
        let request = self.client.post(self.url(path)).header("idempotency-key", format!("\"{key}\"")).json(body);
        Self::reply(request.send().await?).await
    }

    async fn get(&self, path: &str) -> Reply {
        let response = self.client.get(self.url(path)).send().await.expect("the service answers a GET");
        Self::reply(response).await.expect("a body")
    }

    /// `POST path` with `key` until a final answer: again, with the same key and body, after a
    /// transport error (a timeout, a refused or reset connection), a 409 `capture-in-progress`
    /// or a 5xx; bounded by [`REQUEST_DEADLINE`].
    async fn post_until_final(&self, path: &str, key: &str, body: &Value) -> Reply {
        let deadline = Instant::now() + REQUEST_DEADLINE;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.post(path, key, body).await {
                Ok(reply) if reply.is_retryable() => {
                    if reply.status == StatusCode::CONFLICT {
                        assert_eq!(reply.retry_after.as_deref(), Some("1"), "a 409 in progress says when: {reply:?}");
                        self.tally.in_progress.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.tally.server_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    last = format!("{reply:?}");
                }
                Ok(reply) => return reply,
                Err(error) => {
                    self.tally.transport_errors.fetch_add(1, Ordering::Relaxed);
                    last = error.to_string();
                }
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        panic!("POST {path} with key {key}: no final answer in {REQUEST_DEADLINE:?}; the last: {last}")
    }

    /// Opens an account with [`INITIAL_BALANCE`] (or `balance`), creates a payment of `amount`
    /// on it and authorizes it, each until a final answer; the payment's and account's ids.
    async fn authorized_payment(&self, key: &str, amount: i64, balance: i64) -> (String, String) {
        let account = self.post_until_final("/accounts", &format!("{key}-acc"), &json!({ "balance": balance })).await;
        assert_eq!(account.status, StatusCode::CREATED, "{account:?}");
        let account = account.body["id"].as_str().expect("an account id").to_owned();
        let body = json!({ "account_id": account, "amount": amount });
        let payment = self.post_until_final("/payments", &format!("{key}-create"), &body).await;
        assert_eq!(payment.status, StatusCode::CREATED, "{payment:?}");
        let payment = payment.body["id"].as_str().expect("a payment id").to_owned();
        let authorized = self
            .post_until_final(&format!("/payments/{payment}/authorize"), &format!("{key}-authorize"), &json!({}))
            .await;
        assert_eq!((authorized.status, authorized.state()), (StatusCode::OK, "authorized"), "{authorized:?}");
        (payment, account)
    }
}

/// A payment of the tests: its ids, its amount, and how it is driven.
#[derive(Debug, Clone)]
struct TestPayment {
    id: String,
    account: String,
    amount: i64,
    key: String,
    /// Amounts ending in 51: the processor declines them.
    declined: bool,
    /// Captured with one request, whatever its answer: for the recovery worker to finish.
    abandoned: bool,
}

/// The amount of the `n`-th payment: one ending in 51 (declined) when `declined`, else one
/// that never does.
fn amount(n: usize, declined: bool) -> i64 {
    let n = i64::try_from(n).expect("a small n");
    if declined { 100 * n + 51 } else { 100 * n + 100 + n % 50 }
}

/// Creates and authorizes `count` payments, 8 at a time; `declined(n)`, `abandoned(n)` say how
/// each is to be driven.
async fn authorized_payments(
    api: &Api,
    run: &str,
    count: usize,
    declined: impl Fn(usize) -> bool,
    abandoned: impl Fn(usize) -> bool,
) -> Vec<TestPayment> {
    let made = futures_util::stream::iter(0..count)
        .map(|n| {
            let (api, key, declined, abandoned) = (api.clone(), format!("{run}-{n}"), declined(n), abandoned(n));
            async move {
                let amount = amount(n, declined);
                let (id, account) = api.authorized_payment(&key, amount, INITIAL_BALANCE).await;
                TestPayment { id, account, amount, key: format!("{key}-capture"), declined, abandoned }
            }
        })
        .buffered(8)
        .collect::<Vec<_>>()
        .await;
    assert_eq!(made.len(), count);
    made
}

/// `POST /payments/{id}/capture` of `payment` with its key: once when it is abandoned (any
/// answer, or none), else until a final answer, which must be the capture or the decline.
async fn capture(api: &Api, payment: &TestPayment) {
    let path = format!("/payments/{}/capture", payment.id);
    if payment.abandoned {
        match api.post(&path, &payment.key, &json!({})).await {
            Ok(reply) if !reply.is_retryable() => assert_final(payment, &reply),
            _ => _ = api.tally.left_to_recovery.fetch_add(1, Ordering::Relaxed),
        }
        return;
    }
    let reply = api.post_until_final(&path, &payment.key, &json!({})).await;
    assert_final(payment, &reply);
    // A retry of the final answer gives it again.
    let again = api.post_until_final(&path, &payment.key, &json!({})).await;
    assert_final(payment, &again);
    assert_eq!(again.body, reply.body, "the same answer again");
    assert!(again.replayed || payment.declined, "a replay of the capture's first phase: {again:?}");
}

/// The final answer of a capture: 200 `captured`, or 402 `payment-declined` for a declined
/// amount.
fn assert_final(payment: &TestPayment, reply: &Reply) {
    if payment.declined {
        assert_eq!((reply.status, reply.slug()), (StatusCode::PAYMENT_REQUIRED, "payment-declined"), "{reply:?}");
        assert_eq!((reply.body["payment_id"].as_str(), reply.state()), (Some(payment.id.as_str()), "declined"));
    } else {
        assert_eq!((reply.status, reply.state()), (StatusCode::OK, "captured"), "{payment:?}: {reply:?}");
        assert_eq!(reply.body["amount"], payment.amount, "{reply:?}");
    }
}

/// What the books say after the captures, checked against each other.
#[derive(Debug, Default, PartialEq, Eq)]
struct Books {
    captured: usize,
    declined: usize,
    capturing: usize,
    charges: usize,
    double_charges: usize,
    debits: usize,
}

/// Reads the service's database, then the processor's charges, and checks each payment:
/// charged once at the processor exactly when captured, debited exactly when captured, with
/// one receipt; nothing reserved once the capture is settled. (The database first: a payment
/// it shows captured was charged before, so the charges read after hold its charge, also when
/// the recovery worker settles it meanwhile.)
async fn read_books<B: Ledger>(service: &PaymentService<B>, processor: &Processor, payments: &[TestPayment]) -> Books {
    let mut rows = Vec::new();
    for payment in payments {
        let row = service.payment(&payment.id).await.expect("read a payment").expect("the payment exists");
        let balance = service.balance(&payment.account).await.expect("read a balance").expect("the account exists");
        let reserved = service.reserved(&payment.account).await.expect("read a reservation").expect("the account");
        let receipts = service.receipts_of(&payment.id).await.expect("count receipts").0;
        rows.push((payment, row.state, balance, reserved, receipts));
    }
    let charges = processor.charges_per_payment().await;
    let mut books = Books {
        charges: charges.values().sum(),
        double_charges: charges.values().filter(|count| **count > 1).count(),
        ..Books::default()
    };
    let ours: std::collections::HashSet<&str> = payments.iter().map(|p| p.id.as_str()).collect();
    assert!(charges.keys().all(|id| ours.contains(id.as_str())), "charges of unknown payments: {charges:?}");
    for (payment, state, balance, reserved, receipts) in rows {
        let charged = charges.get(&payment.id).copied().unwrap_or(0);
        let debited = balance == INITIAL_BALANCE - payment.amount;
        books.debits += usize::from(debited);
        let context = format!("{payment:?}: state {state}, charged {charged}, balance {balance}, receipts {receipts}");
        match state.as_str() {
            "captured" => {
                books.captured += 1;
                assert!(!payment.declined, "{context}");
                assert!(charged >= 1 && debited && receipts == 1, "{context}");
            }
            "declined" => {
                books.declined += 1;
                assert!(payment.declined, "{context}");
                assert!(charged == 0 && balance == INITIAL_BALANCE && receipts == 0, "{context}");
            }
            "capturing" => books.capturing += 1,
            "authorized" => {
                assert!(payment.abandoned, "only an abandoned capture may never have started: {context}");
                assert!(charged == 0 && balance == INITIAL_BALANCE, "{context}");
            }
            _ => panic!("unexpected state: {context}"),
        }
        if state != "capturing" {
            assert_eq!(reserved, 0, "nothing reserved once the capture is settled: {context}");
        }
    }
    books
}

/// The faults scenario on one database: `pool` opens a pool on it.
async fn faults<B: Ledger>(backend: &str, pool: sqlx::Pool<B>) {
    let run = run_prefix(backend);
    let seed = Rng::from_clock().below(1 << 32).to_string();
    let flags = ["--fail-rate", "0.3", "--timeout-rate", "0.2", "--timeout-delay-ms", "1500", "--seed", &seed];
    let processor = Processor::start(&flags);
    let settings = ProcessorSettings::new(processor.base.clone())
        .timeout(Duration::from_secs(1))
        .recovery_after(Duration::from_secs(3));
    let service = PaymentService::<B>::new(pool).await.expect("create the tables");
    let service = service.with_processor(settings).await.expect("the processor's claims");
    let server = Server::start(service.clone()).await;
    let api = Api::new(&server.base);

    // 100 payments, captured 10 at a time, each retried until its final answer.
    let payments = authorized_payments(&api, &run, 100, |_| false, |_| false).await;
    futures_util::stream::iter(&payments).for_each_concurrent(10, |payment| capture(&api, payment)).await;
    let (in_progress, server_errors) =
        (api.tally.in_progress.load(Ordering::Relaxed), api.tally.server_errors.load(Ordering::Relaxed));
    assert!(in_progress > 0, "the processor's faults reached the client as 409 capture-in-progress");
    assert_eq!(server_errors, 0, "no 5xx from the service");
    let books = read_books(&service, &processor, &payments).await;
    let expected = Books { captured: 100, declined: 0, capturing: 0, charges: 100, double_charges: 0, debits: 100 };
    assert_eq!(books, expected, "seed {seed}");
    // The history: into `capturing` by the request's key, out of it by the processor's answer.
    let detail = api.get(&format!("/payments/{}", payments[0].id)).await.body;
    let moves: Vec<_> = detail["history"].as_array().expect("a history").iter().map(|e| e["to"].clone()).collect();
    assert_eq!(moves, [json!("authorized"), json!("capturing"), json!("captured")], "{detail}");
    assert_eq!(detail["history"][1]["idempotency_key"], json!(payments[0].key), "{detail}");
    assert_eq!(detail["history"][2]["event"], json!("confirm"), "{detail}");

    // Another request (another key) cannot capture a captured payment again.
    let captured = &payments[0];
    let other = api.post(&format!("/payments/{}/capture", captured.id), &format!("{run}-other"), &json!({})).await;
    let other = other.expect("an answer");
    assert_eq!((other.status, other.slug()), (StatusCode::CONFLICT, "already-done-by-another-request"), "{other:?}");

    // A declined amount: 402, again on a retry, nothing charged or debited or reserved.
    let (id, account) = api.authorized_payment(&format!("{run}-decline"), 2_051, INITIAL_BALANCE).await;
    let declined = TestPayment {
        id,
        account,
        amount: 2_051,
        key: format!("{run}-decline-capture"),
        declined: true,
        abandoned: false,
    };
    capture(&api, &declined).await;
    assert_eq!(api.get(&format!("/payments/{}", declined.id)).await.state(), "declined");

    // An account that cannot pay: refused before the processor is called.
    let (poor, poor_account) = api.authorized_payment(&format!("{run}-poor"), 5_000, 1_000).await;
    let (path, key) = (format!("/payments/{poor}/capture"), format!("{run}-poor-capture"));
    let refused = api.post_until_final(&path, &key, &json!({})).await;
    assert_eq!((refused.status, refused.slug()), (StatusCode::CONFLICT, "insufficient-funds"), "{refused:?}");
    assert_eq!(api.get(&format!("/payments/{poor}")).await.state(), "authorized");
    assert_eq!(service.reserved(&poor_account).await.expect("read").expect("the account"), 0);

    let mut all = payments.clone();
    all.push(declined);
    let books = read_books(&service, &processor, &all).await;
    assert_eq!((books.captured, books.declined, books.charges, books.double_charges), (100, 1, 100, 0));
    assert!(!processor.charges_per_payment().await.contains_key(&poor), "nothing charged for the poor account");
    eprintln!(
        "faults test {backend}: captures={} charges={} in_progress_409={in_progress} transport_errors={} seed={seed}",
        books.captured,
        books.charges,
        api.tally.transport_errors.load(Ordering::Relaxed)
    );
    server.stop().await;
}

/// The service as a child process (`target/debug/examples/payments`) on a fixed database;
/// killed when dropped.
struct ServiceProcess {
    child: Option<Child>,
    database_url: String,
    processor_url: String,
    log: PathBuf,
    /// Where the driver sends its requests: updated when a restart needs another port.
    base: Arc<RwLock<String>>,
    port: u16,
}

impl ServiceProcess {
    /// The flags: a client timeout of 1 s, recovery after 2 s.
    fn args(&self) -> Vec<String> {
        let args = [
            "--port",
            &self.port.to_string(),
            "--database-url",
            &self.database_url,
            "--processor-url",
            &self.processor_url,
            "--processor-timeout",
            "1s",
            "--recovery-after",
            "2s",
        ];
        args.iter().map(|arg| (*arg).to_owned()).collect()
    }

    /// Starts the child and waits until it answers, on a new port if its port was taken.
    async fn start(&mut self) {
        for _ in 0..5 {
            let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open the log");
            let child = command(&binaries().payments)
                .args(self.args())
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("the log, twice"))
                .stderr(log)
                .spawn()
                .expect("spawn the payment service");
            self.child = Some(child);
            if self.ready().await {
                return;
            }
            // It exited (its port was taken meanwhile): another port.
            self.kill();
            self.port = free_port();
            *self.base.write().unwrap() = format!("http://127.0.0.1:{}", self.port);
        }
        panic!("the payment service does not start; its log: {}", self.log.display());
    }

    /// Whether the child answers HTTP within 30 seconds (false: it exited).
    async fn ready(&mut self) -> bool {
        let probe = client(Duration::from_secs(1));
        let url = format!("http://127.0.0.1:{}/payments/probe", self.port);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if probe.get(&url).send().await.is_ok() {
                return true;
            }
            let child = self.child.as_mut().expect("a child");
            if child.try_wait().expect("the child's status").is_some() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the payment service does not answer within 30 s; its log: {}", self.log.display());
    }

    /// SIGKILL, and its end reaped.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

/// The crash scenario: the service at `database_url`, a child process killed at random
/// moments during 200 captures and restarted; `service` reads the same database.
async fn crash<B: Ledger>(backend: &str, database_url: &str, service: PaymentService<B>) {
    let run = run_prefix(backend);
    let processor = Processor::start(&[
        "--latency-ms",
        "150",
        "--fail-rate",
        "0.1",
        "--timeout-rate",
        "0.1",
        "--timeout-delay-ms",
        "1500",
    ]);
    let port = free_port();
    let log = std::env::temp_dir().join(format!("{run}.log"));
    let mut child = ServiceProcess {
        child: None,
        database_url: database_url.to_owned(),
        processor_url: processor.base.clone(),
        log: log.clone(),
        base: Arc::new(RwLock::new(format!("http://127.0.0.1:{port}"))),
        port,
    };
    child.start().await;
    let mut api = Api::new("");
    api.base = child.base.clone();
    api.client = client(Duration::from_secs(5));

    // 200 payments: one in 25 declined, one in 10 captured with a single request.
    let started = Instant::now();
    let payments = authorized_payments(&api, &run, 200, |n| n % 25 == 7, |n| n % 10 == 3).await;
    let set_up = started.elapsed();

    // The captures, 4 at a time, while the service is killed and restarted at random moments.
    let done = Arc::new(AtomicBool::new(false));
    let chaos = {
        let done = done.clone();
        tokio::spawn(async move {
            let (mut rng, mut kills) = (Rng::from_clock(), 0_usize);
            while !done.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(700 + rng.below(2000))).await;
                if done.load(Ordering::SeqCst) {
                    break;
                }
                child.kill();
                kills += 1;
                tokio::time::sleep(Duration::from_millis(rng.below(150))).await;
                child.start().await;
            }
            (child, kills)
        })
    };
    let captures = futures_util::stream::iter(&payments).for_each_concurrent(4, |payment| capture(&api, payment));
    // A failed capture (a panic) ends the chaos too, so that the child is killed.
    let captured = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(captures)).await;
    done.store(true, Ordering::SeqCst);
    let (child, kills) = chaos.await.expect("the chaos task");
    let captured_in = started.elapsed() - set_up;
    if let Err(panic) = captured {
        eprintln!("the service's log: {}", log.display());
        std::panic::resume_unwind(panic);
    }

    // The recovery worker settles the abandoned captures left `capturing`: 2 s after they
    // entered it, once the claims of the killed processes ran out (1 s + 3 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut books = read_books(&service, &processor, &payments).await;
    while books.capturing > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        books = read_books(&service, &processor, &payments).await;
    }
    drop(child);
    eprintln!(
        "crash test {backend}: set up in {set_up:?}, captured in {captured_in:?}, settled in {:?}; {} transport errors, \
         {} answers in progress, {} abandoned captures left to the recovery",
        started.elapsed() - set_up - captured_in,
        api.tally.transport_errors.load(Ordering::Relaxed),
        api.tally.in_progress.load(Ordering::Relaxed),
        api.tally.left_to_recovery.load(Ordering::Relaxed),
    );
    eprintln!(
        "crash test {backend}: kills={kills} captures={} charges={} double_charges={} stuck={}",
        books.captured, books.charges, books.double_charges, books.capturing
    );
    let context = format!("{books:?}; the service's log: {}", log.display());
    assert!(kills >= 3, "the service was killed {kills} times: {context}");
    assert_eq!(books.double_charges, 0, "{context}");
    assert_eq!(books.capturing, 0, "stuck in capturing: {context}");
    assert_eq!(books.charges, books.captured, "{context}");
    assert_eq!(books.captured, books.debits, "{context}");
    let expected_declined = payments.iter().filter(|p| p.declined && !p.abandoned).count();
    assert!(books.declined >= expected_declined, "{context}");
    let must_capture = payments.iter().filter(|p| !p.declined && !p.abandoned).count();
    assert!(books.captured >= must_capture, "{context}");
    let _ = std::fs::remove_file(&log);
}

/// A SQLite file in the temporary directory, removed (with `-wal` and `-shm`) when the test ends.
fn sqlite_file(run: &str) -> (String, crate::fixture::Leftovers) {
    let path = std::env::temp_dir().join(format!("{run}.db"));
    let leftovers = crate::fixture::Leftovers::sqlite_file(&path);
    (format!("sqlite://{}?mode=rwc", path.display()), leftovers)
}

/// A PostgreSQL schema of this run only: the service's tables and the runtime's are created
/// in it (`search_path`), and it is dropped with them when the guard is dropped, also when the
/// test panics.
struct Schema {
    name: String,
}

impl Schema {
    /// A new schema, or `None` (the test skipped) when PostgreSQL does not answer.
    async fn create(test: &str) -> Option<Self> {
        let pool = postgres_pool(test).await?;
        let name = run_prefix("pg").replace('-', "_");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}"))).execute(&pool).await.expect("a schema");
        pool.close().await;
        Some(Self { name })
    }

    /// The test server's URL with this schema first on the search path.
    fn url(&self) -> String {
        let base = postgres_url();
        let separator = if base.contains('?') { '&' } else { '?' };
        format!("{base}{separator}options=-c%20search_path%3D{}", self.name)
    }

    async fn pool(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&self.url())
            .await
            .expect("a pool on the schema")
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let drop_schema = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            runtime.block_on(async {
                use sqlx::Connection as _;
                let mut conn = sqlx::PgConnection::connect(&postgres_url()).await.map_err(|e| e.to_string())?;
                sqlx::query("SET lock_timeout = '10s'").execute(&mut conn).await.map_err(|e| e.to_string())?;
                sqlx::query(sqlx::AssertSqlSafe(drop_schema)).execute(&mut conn).await.map_err(|e| e.to_string())?;
                Ok::<(), String>(())
            })
        })
        .join()
        .unwrap_or_else(|_| Err("the cleanup thread panicked".to_owned()));
        if let Err(error) = dropped {
            if std::thread::panicking() {
                eprintln!("dropping schema {}: {error}", self.name);
            } else {
                panic!("dropping schema {}: {error}", self.name);
            }
        }
    }
}

/// Each test must end within this.
const TEST_TIMEOUT: Duration = Duration::from_secs(150);

async fn bounded(scenario: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_TIMEOUT, scenario).await.expect("the scenario ends in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn captures_under_processor_faults_on_sqlite() {
    let (url, _leftovers) = sqlite_file(&run_prefix("faults-sqlite"));
    let pool = payments::sqlite_pool(&url).await.expect("open the SQLite file");
    bounded(faults::<sqlx::Sqlite>("sqlite", pool)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn captures_under_processor_faults_on_postgres() {
    let Some(schema) = Schema::create("captures_under_processor_faults_on_postgres").await else {
        return;
    };
    let pool = schema.pool().await;
    bounded(faults::<sqlx::Postgres>("postgres", pool.clone())).await;
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn captures_survive_crashes_on_sqlite() {
    let (url, _leftovers) = sqlite_file(&run_prefix("crash-sqlite"));
    let service = PaymentService::<sqlx::Sqlite>::new(payments::sqlite_pool(&url).await.expect("open the SQLite file"))
        .await
        .expect("create the tables");
    bounded(crash("sqlite", &url, service.clone())).await;
    service.pool().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn captures_survive_crashes_on_postgres() {
    let Some(schema) = Schema::create("captures_survive_crashes_on_postgres").await else {
        return;
    };
    let service = PaymentService::<sqlx::Postgres>::new(schema.pool().await).await.expect("create the tables");
    bounded(crash("postgres", &schema.url(), service.clone())).await;
    service.pool().close().await;
}

/// docs/payment-service.md shows the machine as the derive renders it.
#[test]
fn the_docs_show_the_payment_machine() {
    let docs = include_str!("../../docs/payment-service.md");
    let block = format!("```mermaid\n{}```", PaymentState::MERMAID);
    assert!(docs.contains(&block), "docs/payment-service.md should show:\n{block}");
}

/// A processor nobody answers at leaves a capture `capturing`; `PaymentService::capturing`
/// (what `serve` warns of when it starts without a processor) lists it, and only it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn capturing_payments_are_listed_on_sqlite() {
    let (url, _leftovers) = sqlite_file(&run_prefix("capturing-sqlite"));
    let pool = payments::sqlite_pool(&url).await.expect("open the SQLite file");
    bounded(async {
        let nobody = format!("http://127.0.0.1:{}", free_port());
        let settings =
            ProcessorSettings::new(nobody).timeout(Duration::from_millis(300)).recovery_after(Duration::from_secs(600));
        let plain = PaymentService::<sqlx::Sqlite>::new(pool.clone()).await.expect("create the tables");
        let service = plain.clone().with_processor(settings).await.expect("the processor's claims");
        let server = Server::start(service).await;
        let api = Api::new(&server.base);
        let run = run_prefix("capturing");
        let payments = authorized_payments(&api, &run, 2, |_| false, |_| false).await;
        assert_eq!(plain.capturing(10).await.unwrap(), Vec::<String>::new(), "none before a capture");
        let path = format!("/payments/{}/capture", payments[0].id);
        let reply = api.post(&path, &payments[0].key, &json!({})).await.expect("an answer");
        assert_eq!((reply.status, reply.slug()), (StatusCode::CONFLICT, "capture-in-progress"), "{reply:?}");
        server.stop().await;
        assert_eq!(plain.capturing(10).await.unwrap(), vec![payments[0].id.clone()]);
    })
    .await;
    pool.close().await;
}
