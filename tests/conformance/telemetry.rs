//! Metrics and spans (`fsm_runtime::telemetry`), on memory, SQLite, PostgreSQL and
//! MySQL/MariaDB:
//!
//! - `fsm_transitions_total{machine, outcome}` moves once per request, for each outcome
//!   (`applied`, `already_applied`, `replayed`, `refused`, `conflict`), and
//!   `fsm_transition_duration_seconds{machine}` records each request;
//! - the relay counts its publications and failures by topic and sets the outbox gauges; a
//!   purge counts the keys it removed;
//! - every store operation runs in a span named after it, carrying the machine, the entity, the
//!   target or event, the key's source, the outcome, the duration and, when it failed, the
//!   error; inside the caller's transaction (`Within`) the span says so.
//!
//! Each test captures what it reports on its own thread: a current-thread runtime, a
//! `metrics_util` `DebuggingRecorder` set as the thread's local recorder and a `tracing`
//! subscriber set as the thread's default, so tests running at the same time do not mix. The
//! statements SQLite runs on its worker thread report nothing of their own here: the store
//! reports from the task that called it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fsm_runtime::outbox::{Outbox, OutboxMessage, OutboxSource, PendingMessage, Publisher, Relay};
use fsm_runtime::store::{EffectFuture, LockedEntity as _};
use fsm_runtime::telemetry::{
    KEYS_PURGED_TOTAL, OUTBOX_DEAD, OUTBOX_OLDEST_AGE_SECONDS, OUTBOX_PENDING, RELAY_FAILURES_TOTAL,
    RELAY_PUBLISHED_TOTAL, TRANSITION_DURATION_SECONDS, TRANSITIONS_TOTAL,
};
use fsm_runtime::{Fingerprint, IdempotencyKey, Keys as _, Store, TransitionRequest};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

use crate::fixture::backends::RawAccess;
use crate::fixture::machines::{Order, OrderEvent};
use crate::fixture::sql::{Fixture, TestBackend};

/// A span as recorded: its name and its fields as text, and the levels of the events inside it.
#[derive(Debug, Clone, Default)]
struct SpanRecord {
    name: String,
    fields: BTreeMap<String, String>,
    events: Vec<tracing::Level>,
}

impl SpanRecord {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// The spans of one test, in the order they were opened, each with its id while it is open
/// (the registry reuses the ids of closed spans).
#[derive(Debug, Clone, Default)]
struct Spans(Arc<Mutex<Vec<OpenOrClosed>>>);

/// A recorded span, with its id while it is open.
type OpenOrClosed = (Option<u64>, SpanRecord);

impl Spans {
    /// The recorded spans named `name`.
    fn named(&self, name: &str) -> Vec<SpanRecord> {
        self.0.lock().unwrap().iter().filter(|(_, span)| span.name == name).map(|(_, span)| span.clone()).collect()
    }

    fn update(&self, id: &Id, change: impl FnOnce(&mut SpanRecord)) {
        let mut spans = self.0.lock().unwrap();
        if let Some((_, span)) = spans.iter_mut().find(|(open, _)| *open == Some(id.into_u64())) {
            change(span);
        }
    }

    fn close(&self, id: &Id) {
        let mut spans = self.0.lock().unwrap();
        spans.iter_mut().filter(|(open, _)| *open == Some(id.into_u64())).for_each(|(open, _)| *open = None);
    }
}

struct FieldsAsText<'a>(&'a mut BTreeMap<String, String>);

impl Visit for FieldsAsText<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// Records the spans whose name starts with `fsm.` and the levels of the events inside them.
struct SpanLayer(Spans);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for SpanLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: Context<'_, S>) {
        if !attrs.metadata().name().starts_with("fsm.") {
            return;
        }
        let mut record = SpanRecord { name: attrs.metadata().name().to_owned(), ..SpanRecord::default() };
        attrs.record(&mut FieldsAsText(&mut record.fields));
        self.0.0.lock().unwrap().push((Some(id.into_u64()), record));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        self.0.update(id, |span| values.record(&mut FieldsAsText(&mut span.fields)));
    }

    fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
        self.0.close(&id);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let parent = event.parent().cloned().or_else(|| ctx.current_span().id().cloned());
        if let Some(parent) = parent {
            self.0.update(&parent, |span| span.events.push(*event.metadata().level()));
        }
    }
}

/// What a test reported: its metrics and its spans.
struct Captured {
    snapshotter: Snapshotter,
    spans: Spans,
}

/// The metrics reported since the last call: counters and gauges by name and labels, and the
/// number of values each histogram recorded.
#[derive(Debug, Default)]
struct Metrics(BTreeMap<(String, Vec<(String, String)>), DebugValue>);

impl Captured {
    fn metrics(&self) -> Metrics {
        let mut metrics = Metrics::default();
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<_> = key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
            labels.sort();
            metrics.0.insert((key.name().to_owned(), labels), value);
        }
        metrics
    }
}

impl Metrics {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        let mut labels: Vec<_> = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        labels.sort();
        self.0.get(&(name.to_owned(), labels))
    }

    /// The counter's increase, 0 when it did not move.
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.value(name, labels) {
            Some(DebugValue::Counter(n)) => *n,
            None => 0,
            Some(other) => panic!("{name} is not a counter: {other:?}"),
        }
    }

    /// The gauge's value, `None` when it was not set.
    fn gauge(&self, name: &str) -> Option<f64> {
        match self.value(name, &[]) {
            Some(DebugValue::Gauge(value)) => Some(value.into_inner()),
            None => None,
            Some(other) => panic!("{name} is not a gauge: {other:?}"),
        }
    }

    /// How many values the histogram recorded.
    fn recorded(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        match self.value(name, labels) {
            Some(DebugValue::Histogram(values)) => values.len(),
            None => 0,
            Some(other) => panic!("{name} is not a histogram: {other:?}"),
        }
    }

    /// The transitions counted for `Order`, by outcome.
    fn outcomes(&self) -> BTreeMap<&'static str, u64> {
        ["applied", "already_applied", "replayed", "refused", "conflict", "error"]
            .into_iter()
            .map(|outcome| (outcome, self.counter(TRANSITIONS_TOTAL, &[("machine", "Order"), ("outcome", outcome)])))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Runs `test` on a current-thread runtime with a local metrics recorder and a thread-default
/// span recorder, both handed to the test.
fn capturing<Fut: Future<Output = ()>>(test: impl FnOnce(Arc<Captured>) -> Fut) {
    let recorder = DebuggingRecorder::new();
    let spans = Spans::default();
    let captured = Arc::new(Captured { snapshotter: recorder.snapshotter(), spans: spans.clone() });
    let _metrics = metrics::set_default_local_recorder(&recorder);
    let subscriber = tracing_subscriber::registry().with(SpanLayer(spans));
    let _spans = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(test(captured));
}

fn key(table: &str, seq: i64) -> IdempotencyKey {
    IdempotencyKey::new(table, seq).unwrap()
}

fn fingerprint(body: &str) -> Fingerprint {
    Fingerprint::of(&body).unwrap()
}

/// Each outcome moves its counter once, and the histogram records every request.
async fn counters_move_per_outcome<S: Store<Order> + RawAccess + 'static>(
    store: Arc<S>,
    table: String,
    captured: Arc<Captured>,
) {
    store.create(1).await.unwrap();
    store.create(2).await.unwrap();
    captured.metrics();
    let count = async |request: TransitionRequest<'static, Order, S::Tx>| {
        let _ = store.apply(request).await;
        captured.metrics().outcomes()
    };
    let once = |outcome| BTreeMap::from([(outcome, 1)]);
    assert_eq!(count(TransitionRequest::to(1, Order::Paid)).await, once("applied"));
    assert_eq!(count(TransitionRequest::to(1, Order::Paid)).await, once("already_applied"));
    assert_eq!(count(TransitionRequest::fire(1, OrderEvent::Pay)).await, once("already_applied"));
    let keyed = || TransitionRequest::to(2, Order::Paid).idempotency_key(key(&table, 1), fingerprint("pay"));
    assert_eq!(count(keyed()).await, once("applied"));
    assert_eq!(count(keyed()).await, once("replayed"));
    // Refused: an illegal move, a missing entity, an event with no edge from the state.
    assert_eq!(count(TransitionRequest::to(1, Order::Delivered)).await, once("refused"));
    assert_eq!(count(TransitionRequest::to(404, Order::Paid)).await, once("refused"));
    assert_eq!(count(TransitionRequest::fire(1, OrderEvent::Deliver)).await, once("refused"));
    // Conflicts: another version, an observed state that moved on, a key reused.
    assert_eq!(count(TransitionRequest::to(1, Order::Shipped).expect_version(7)).await, once("conflict"));
    assert_eq!(count(TransitionRequest::from(1, Order::Created, Order::Cancelled)).await, once("conflict"));
    let reused = TransitionRequest::to(2, Order::Paid).idempotency_key(key(&table, 1), fingerprint("other"));
    assert_eq!(count(reused).await, once("conflict"));
    // Every request once in the histogram, and only under its machine.
    store.transition(1, Order::Shipped).await.unwrap();
    store.transition(1, Order::Shipped).await.unwrap();
    let metrics = captured.metrics();
    assert_eq!(metrics.recorded(TRANSITION_DURATION_SECONDS, &[("machine", "Order")]), 2, "{metrics:?}");
    // A transition under a lock counts too.
    let mut locked = store.lock(2).await.unwrap();
    locked.transition(Order::Shipped).await.unwrap();
    locked.commit().await.unwrap();
    assert_eq!(captured.metrics().outcomes(), once("applied"));
}

/// A publisher that fails each message's first attempt.
#[derive(Clone, Default)]
struct FailsFirst(Arc<Mutex<Vec<String>>>);

impl Publisher for FailsFirst {
    async fn publish(&self, message: &PendingMessage) -> Result<(), fsm_runtime::error::BoxError> {
        let mut tried = self.0.lock().unwrap();
        if tried.contains(&message.message_id) {
            return Ok(());
        }
        tried.push(message.message_id.clone());
        Err("the broker is away".into())
    }
}

fn enqueue<Tx: Outbox>(topic: String) -> impl for<'t> FnOnce(&'t mut Tx) -> EffectFuture<'t> + Send {
    move |tx| {
        Box::pin(async move {
            tx.enqueue(OutboxMessage::new(topic, serde_json::json!({"receipt": true}))).await?;
            Ok(())
        })
    }
}

/// The relay counts publications and failures by topic and sets the outbox gauges; a purge
/// counts the keys it removed.
async fn relay_moves_its_metrics<S>(store: Arc<S>, table: String, captured: Arc<Captured>)
where
    S: Store<Order> + RawAccess + 'static,
    S::Tx: Outbox,
{
    for id in 1..=2 {
        store.create(id).await.unwrap();
        let request = TransitionRequest::to(id, Order::Paid)
            .idempotency_key(key(&table, id), fingerprint("pay"))
            .effect(enqueue::<S::Tx>(table.clone()));
        assert!(store.apply(request).await.unwrap().is_applied());
    }
    let outbox = store.outbox(&table).await;
    // The stats see this test's messages (on a shared database, others' too).
    tokio::time::sleep(Duration::from_millis(5)).await;
    let stats = outbox.stats().await.unwrap();
    assert!(stats.pending >= 2, "{stats:?}");
    assert!(stats.oldest_pending_age.is_some_and(|age| age > Duration::ZERO), "{stats:?}");
    assert_eq!(stats.dead, 0);
    captured.metrics();

    // No wait after a failure: the next pass tries again.
    let relay = Relay::new(outbox.clone()).backoff(Duration::ZERO, Duration::ZERO);
    let publisher = FailsFirst::default();
    let topic = [("topic", table.as_str())];
    let report = relay.run_once(&publisher).await.unwrap();
    // Each message fails once; a failure does not end the pass.
    assert_eq!((report.published, report.failed), (0, 2));
    let metrics = captured.metrics();
    assert_eq!(metrics.counter(RELAY_FAILURES_TOTAL, &topic), 2, "{metrics:?}");
    assert_eq!(metrics.counter(RELAY_PUBLISHED_TOTAL, &topic), 0, "{metrics:?}");
    assert!(metrics.gauge(OUTBOX_PENDING).is_some_and(|pending| pending >= 2.0), "{metrics:?}");
    assert!(metrics.gauge(OUTBOX_OLDEST_AGE_SECONDS).is_some_and(|age| age > 0.0), "{metrics:?}");
    assert_eq!(metrics.gauge(OUTBOX_DEAD), Some(0.0), "{metrics:?}");

    let mut published = 0;
    for _ in 0..10 {
        published += relay.run_once(&publisher).await.unwrap().published;
        if published == 2 {
            break;
        }
    }
    let metrics = captured.metrics();
    assert_eq!(metrics.counter(RELAY_PUBLISHED_TOTAL, &topic), 2, "{metrics:?}");
    assert!(metrics.gauge(OUTBOX_PENDING).is_some(), "the gauges are set after each pass: {metrics:?}");

    tokio::time::sleep(Duration::from_millis(5)).await;
    let purged = store.keys().purge_of(Some(&table), Duration::ZERO).await.unwrap();
    assert_eq!(purged, 2);
    assert_eq!(captured.metrics().counter(KEYS_PURGED_TOTAL, &[]), 2);
}

/// Every operation runs in its span, with the fields an operator filters on.
async fn spans_carry_the_fields<S: Store<Order> + RawAccess + 'static>(
    store: Arc<S>,
    table: String,
    captured: Arc<Captured>,
) {
    store.create(1).await.unwrap();
    store.create(1).await.unwrap();
    store.transition(1, Order::Paid).await.unwrap();
    store.fire(1, OrderEvent::Ship).await.unwrap();
    let keyed = TransitionRequest::to(1, Order::Delivered).idempotency_key(key(&table, 9), fingerprint("deliver"));
    store.apply(keyed).await.unwrap();
    store.transition(1, Order::Cancelled).await.unwrap_err();
    store.get(1).await.unwrap();
    store.get(404).await.unwrap_err();
    store.history(1).await.unwrap();
    drop(store.lock(1).await.unwrap());
    store.delete(1).await.unwrap();

    let spans = &captured.spans;
    let applies = spans.named("fsm.apply");
    assert_eq!(applies.len(), 4, "{applies:#?}");
    for span in &applies {
        assert_eq!(span.field("machine"), Some("Order"), "{span:?}");
        assert_eq!(span.field("entity"), Some("1"), "{span:?}");
        assert!(span.field("store").is_some_and(|store| !store.is_empty()), "{span:?}");
        assert_eq!(span.field("in_caller_tx"), Some("false"), "{span:?}");
        assert!(span.field("duration_us").is_some_and(|us| us.parse::<u64>().is_ok()), "{span:?}");
    }
    let [to, fire, keyed, refused] = &applies[..] else { unreachable!() };
    assert_eq!((to.field("target"), to.field("event"), to.field("outcome")), (Some("paid"), None, Some("applied")));
    assert_eq!((fire.field("target"), fire.field("event")), (None, Some("ship")));
    assert_eq!(fire.field("outcome"), Some("applied"));
    assert_eq!(keyed.field("key_source"), Some(table.as_str()));
    assert_eq!(to.field("key_source"), None);
    assert_eq!(refused.field("outcome"), Some("refused"));
    assert!(refused.field("error").is_some_and(|e| e.contains("delivered")), "{refused:?}");
    assert!(refused.events.iter().all(|level| *level > tracing::Level::WARN), "a refusal is not logged as an error");

    let outcomes =
        |name: &str| spans.named(name).iter().map(|s| s.field("outcome").map(str::to_owned)).collect::<Vec<_>>();
    let some = |names: &[&str]| names.iter().map(|name| Some((*name).to_owned())).collect::<Vec<_>>();
    assert_eq!(outcomes("fsm.create"), some(&["created", "already_exists"]));
    assert_eq!(outcomes("fsm.get"), some(&["found", "refused"]));
    assert_eq!(outcomes("fsm.history"), some(&["found"]));
    assert_eq!(outcomes("fsm.lock"), some(&["locked"]));
    assert_eq!(outcomes("fsm.delete"), some(&["deleted"]));
    let missing = &spans.named("fsm.get")[1];
    assert_eq!(missing.field("entity"), Some("404"));
    assert!(missing.field("error").is_some(), "{missing:?}");
}

/// A transition in the caller's transaction is traced and counted, its span marked.
async fn within_spans_are_marked<B: TestBackend>(fx: Arc<Fixture<B, Order>>, captured: Arc<Captured>) {
    fx.store.create(1).await.unwrap();
    captured.metrics();
    let mut tx = fx.store.begin().await.unwrap();
    assert!(fx.store.within(&mut tx).fire(1, OrderEvent::Pay).await.unwrap().is_applied());
    fx.store.within(&mut tx).get(1).await.unwrap();
    fx.store.within(&mut tx).transition(1, Order::Delivered).await.unwrap_err();
    tx.commit().await.unwrap();
    let marked: Vec<_> = captured
        .spans
        .named("fsm.apply")
        .into_iter()
        .map(|span| (span.field("in_caller_tx").map(str::to_owned), span.field("outcome").map(str::to_owned)))
        .collect();
    let within = |outcome: &str| (Some("true".to_owned()), Some(outcome.to_owned()));
    assert_eq!(marked, [within("applied"), within("refused")]);
    assert_eq!(captured.spans.named("fsm.get")[0].field("in_caller_tx"), Some("true"));
    let metrics = captured.metrics();
    assert_eq!(metrics.outcomes(), BTreeMap::from([("applied", 1), ("refused", 1)]), "{metrics:?}");
}

macro_rules! telemetry_cases {
    ($backend:ident, $make:ident, $($case:ident),*) => {
        mod $backend {
            use super::*;
            $(
                #[test]
                fn $case() {
                    capturing(|captured| async move {
                        let make = |name: String| async move {
                            crate::fixture::backends::$make::<Order>(&name).await
                        };
                        crate::run(stringify!($case), make, |store, table| super::$case(store, table, captured)).await;
                    });
                }
            )*
        }
    };
}

macro_rules! within_case {
    ($backend:ident, $db:ty) => {
        mod $backend {
            #[test]
            fn within_spans_are_marked() {
                crate::telemetry::capturing(|captured| async move {
                    let case = |fx| crate::telemetry::within_spans_are_marked::<$db>(fx, captured);
                    crate::fixture::sql::run("within_spans_are_marked", case).await;
                });
            }
        }
    };
}

telemetry_cases!(memory, memory_store, counters_move_per_outcome, relay_moves_its_metrics, spans_carry_the_fields);
telemetry_cases!(sqlite, sqlite_store, counters_move_per_outcome, relay_moves_its_metrics, spans_carry_the_fields);
telemetry_cases!(postgres, postgres_store, counters_move_per_outcome, relay_moves_its_metrics, spans_carry_the_fields);
telemetry_cases!(mysql, mysql_store, counters_move_per_outcome, relay_moves_its_metrics, spans_carry_the_fields);

mod within {
    within_case!(sqlite, fsm_runtime::sqlx::Sqlite);
    within_case!(postgres, fsm_runtime::sqlx::Postgres);
    within_case!(mysql, fsm_runtime::sqlx::MySql);
}
