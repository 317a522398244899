//! The fake card processor of `examples/processor`, run as a child process and driven over HTTP:
//! one charge per `Idempotency-Key` whatever the retries, the faults and the races.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

/// The example binary, built once per test run (`CARGO_BIN_EXE_*` does not exist for examples).
/// A failed build is remembered, so that every test reports it without building again.
fn processor_binary() -> &'static PathBuf {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BINARY.get_or_init(build_processor) {
        Ok(binary) => binary,
        Err(error) => panic!("{error}"),
    }
}

/// `cargo build --example processor`, and the binary's path.
fn build_processor() -> Result<PathBuf, String> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(env!("CARGO"))
        .args(["build", "--example", "processor", "--quiet"])
        .current_dir(&manifest_dir)
        .status()
        .map_err(|error| format!("cannot run cargo build --example processor: {error}"))?;
    if !status.success() {
        return Err(format!("cargo build --example processor: {status}"));
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| manifest_dir.join("target"), PathBuf::from);
    // A relative CARGO_TARGET_DIR is relative to where cargo ran: the manifest directory here.
    let examples = manifest_dir.join(target_dir).join("debug").join("examples");
    Ok(examples.join(format!("processor{}", std::env::consts::EXE_SUFFIX)))
}

/// A running processor, killed when dropped.
struct Processor {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    base: String,
}

impl Processor {
    /// Starts the processor with `flags` on a free port, and reads its port from its first line.
    fn start(flags: &[&str]) -> Self {
        let mut child = Command::new(processor_binary())
            .args(["--port", "0"])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the processor");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("the processor's stdout is piped");
        BufReader::new(stdout).read_line(&mut line).expect("read the processor's first line");
        // Owned by the guard before the checks below, so that the child is killed if one fails.
        let mut processor = Self { child, base: String::new() };
        let base = line
            .trim_end()
            .strip_prefix("processor listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let port: u16 = base.strip_prefix("http://127.0.0.1:").and_then(|port| port.parse().ok()).expect("a port");
        assert_ne!(port, 0, "the bound port, not 0");
        processor.base = base;
        processor
    }

    /// `POST /charges` with `key` (none if `None`) and `body`.
    async fn post(&self, client: &Client, key: Option<&str>, body: &Value) -> reqwest::Result<Response> {
        let mut request = client.post(format!("{}/charges", self.base)).json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await
    }

    /// `GET /charges`.
    async fn charges(&self) -> Vec<Value> {
        let response = client().get(format!("{}/charges", self.base)).send().await.expect("GET /charges");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("a JSON array of charges")
    }
}

impl Drop for Processor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client without proxies (a proxy from the environment must not see 127.0.0.1).
fn client() -> Client {
    Client::builder().no_proxy().build().expect("an HTTP client")
}

/// A client that gives up after `timeout`.
fn impatient_client(timeout: Duration) -> Client {
    Client::builder().no_proxy().timeout(timeout).build().expect("an HTTP client")
}

/// A charge request body.
fn body(amount: i64, payment_id: &str) -> Value {
    json!({"amount": amount, "payment_id": payment_id})
}

/// The status and the JSON body of a response.
async fn status_and_json(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.expect("a JSON body"))
}

#[tokio::test]
async fn a_key_charges_once_and_replays_its_charge() {
    let processor = Processor::start(&[]);
    let client = client();
    let first = processor.post(&client, Some("k1"), &body(1000, "p1")).await.expect("first");
    assert!(first.headers().get("idempotent-replayed").is_none());
    let (status, charge) = status_and_json(first).await;
    assert_eq!(status, StatusCode::CREATED, "{charge}");
    assert!(charge["id"].as_str().is_some_and(|id| id.starts_with("ch_")), "{charge}");
    assert_eq!(
        (&charge["idempotency_key"], &charge["payment_id"], &charge["amount"]),
        (&json!("k1"), &json!("p1"), &json!(1000))
    );

    let replay = processor.post(&client, Some("k1"), &body(1000, "p1")).await.expect("replay");
    assert_eq!(replay.headers().get("idempotent-replayed").map(|v| v.as_bytes()), Some(&b"true"[..]));
    assert_eq!(status_and_json(replay).await, (StatusCode::OK, charge.clone()));
    assert_eq!(processor.charges().await, vec![charge]);
}

#[tokio::test]
async fn a_key_with_another_body_is_refused() {
    let processor = Processor::start(&[]);
    let client = client();
    let first = processor.post(&client, Some("k1"), &body(1000, "p1")).await.expect("first");
    assert_eq!(first.status(), StatusCode::CREATED);
    for other in [body(2000, "p1"), body(1000, "p2")] {
        let (status, error) = status_and_json(processor.post(&client, Some("k1"), &other).await.expect("reuse")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
        assert!(error.to_string().contains("k1"), "the error names the key: {error}");
    }
    assert_eq!(processor.charges().await.len(), 1);
}

#[tokio::test]
async fn bad_requests_are_400_and_charge_nothing() {
    let processor = Processor::start(&[]);
    let client = client();
    let no_key = processor.post(&client, None, &body(1000, "p1")).await.expect("no key");
    assert_eq!(no_key.status(), StatusCode::BAD_REQUEST);
    let empty_key = processor.post(&client, Some(""), &body(1000, "p1")).await.expect("empty key");
    assert_eq!(empty_key.status(), StatusCode::BAD_REQUEST);
    for bad in [json!({"amount": 1000}), json!({"payment_id": "p1"}), json!({"amount": "ten", "payment_id": "p1"})] {
        let (status, error) = status_and_json(processor.post(&client, Some("k1"), &bad).await.expect("bad")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {error}");
    }
    let not_json = client
        .post(format!("{}/charges", processor.base))
        .header("Idempotency-Key", "k2")
        .body("{not json")
        .send()
        .await
        .expect("not JSON");
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    assert_eq!(processor.charges().await, Vec::<Value>::new());
}

#[tokio::test]
async fn amounts_ending_in_51_are_declined_and_never_charged() {
    let processor = Processor::start(&[]);
    let client = client();
    for _ in 0..2 {
        let (status, error) =
            status_and_json(processor.post(&client, Some("d1"), &body(1051, "p1")).await.expect("decline")).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{error}");
        assert_eq!(error["error"], "card_declined");
    }
    assert_eq!(processor.charges().await, Vec::<Value>::new());
    let other = processor.post(&client, Some("d2"), &body(1050, "p2")).await.expect("not declined");
    assert_eq!(other.status(), StatusCode::CREATED, "only amounts ending in 51 are declined");
}

#[tokio::test]
async fn concurrent_requests_of_one_key_make_one_charge() {
    let processor = Processor::start(&["--latency-ms", "200"]);
    let client = client();
    let race = body(700, "p1");
    let requests = (0..20).map(|_| processor.post(&client, Some("race"), &race));
    let responses = futures_util::future::join_all(requests).await;
    let (mut created, mut conflicts, mut replays) = (Vec::new(), 0, Vec::new());
    for response in responses {
        let response = response.expect("a response");
        match response.status() {
            StatusCode::CONFLICT => {
                assert_eq!(response.headers().get("retry-after").map(|v| v.as_bytes()), Some(&b"1"[..]));
                conflicts += 1;
            }
            StatusCode::CREATED => created.push(response.json::<Value>().await.expect("a charge")),
            StatusCode::OK => replays.push(response.json::<Value>().await.expect("a charge")),
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(created.len(), 1, "one 201 ({conflicts} conflicts, {} replays)", replays.len());
    assert!(conflicts >= 1, "requests during the latency are 409");
    assert!(replays.iter().all(|replay| *replay == created[0]), "replays give the same charge");
    assert_eq!(processor.charges().await, created);
}

#[tokio::test]
async fn failures_charge_nothing_and_free_the_key() {
    let processor = Processor::start(&["--fail-rate", "1"]);
    let client = client();
    for _ in 0..2 {
        let (status, error) =
            status_and_json(processor.post(&client, Some("f1"), &body(1000, "p1")).await.expect("fail")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "the key is free again, not a replay: {error}");
    }
    assert_eq!(processor.charges().await, Vec::<Value>::new());
}

#[tokio::test]
async fn a_timed_out_charge_stands_and_is_replayed() {
    let processor = Processor::start(&["--timeout-rate", "1", "--timeout-delay-ms", "2000"]);
    let error = processor
        .post(&impatient_client(Duration::from_millis(300)), Some("t1"), &body(1000, "p1"))
        .await
        .expect_err("the client times out");
    assert!(error.is_timeout(), "{error}");
    let charges = processor.charges().await;
    assert_eq!(charges.len(), 1, "the charge was made: {charges:?}");
    assert_eq!(charges[0]["idempotency_key"], "t1");
    let retry = processor.post(&client(), Some("t1"), &body(1000, "p1")).await.expect("retry");
    assert_eq!(status_and_json(retry).await, (StatusCode::OK, charges[0].clone()));
}

#[tokio::test]
async fn retried_payments_under_faults_are_charged_exactly_once() {
    let flags = ["--fail-rate", "0.3", "--timeout-rate", "0.2", "--timeout-delay-ms", "1000", "--seed", "7"];
    let processor = Processor::start(&flags);
    let client = impatient_client(Duration::from_millis(300));
    let (mut failures, mut timeouts) = (0, 0);
    for payment in 0..50_i64 {
        let (key, payment_id) = (format!("key-{payment}"), format!("pay-{payment}"));
        let mut attempts = 0;
        loop {
            attempts += 1;
            assert!(attempts <= 100, "{payment_id}: no 2xx after 100 attempts");
            match processor.post(&client, Some(&key), &body(100 * (payment + 1), &payment_id)).await {
                Ok(response) if response.status().is_success() => break,
                Ok(response) if response.status() == StatusCode::INTERNAL_SERVER_ERROR => failures += 1,
                Ok(response) => panic!("{payment_id}: unexpected status {}", response.status()),
                Err(error) if error.is_timeout() => timeouts += 1,
                Err(error) => panic!("{payment_id}: {error}"),
            }
        }
    }
    assert!(failures > 0 && timeouts > 0, "the faults happened: {failures} failures, {timeouts} timeouts");
    let charges = processor.charges().await;
    assert_eq!(charges.len(), 50, "one charge per payment");
    for (payment, charge) in charges.iter().enumerate() {
        assert_eq!(charge["payment_id"], format!("pay-{payment}"));
        assert_eq!(charge["idempotency_key"], format!("key-{payment}"));
        assert_eq!(charge["amount"], 100 * (payment + 1));
    }
}

#[test]
fn a_rate_outside_0_to_1_is_a_usage_error() {
    for flag in ["--fail-rate=2", "--timeout-rate=-0.1", "--fail-rate=NaN"] {
        let output = Command::new(processor_binary()).args(["--port", "0", flag]).output().expect("run the processor");
        assert_eq!(output.status.code(), Some(2), "{flag}: {output:?}");
        assert!(output.stdout.is_empty(), "{flag}: it does not start");
    }
}
