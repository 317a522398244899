//! `GET /metrics`: the process's metrics in Prometheus text, through the `metrics` crate's
//! Prometheus exporter.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use fsm_runtime::outbox::OutboxSource as _;
use fsm_runtime::telemetry::{self, TRANSITION_DURATION_SECONDS};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::{Ledger, PaymentService};

/// The content type of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The buckets of [`TRANSITION_DURATION_SECONDS`], in seconds: from half a millisecond to
/// two and a half seconds.
const DURATION_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// How often the recorder's histograms are compacted when nobody scrapes them.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The handle of the process's Prometheus recorder: installed as the global `metrics`
/// recorder by the first call (one per process: the tests start several servers in one), with
/// the metrics described and a thread that runs its upkeep.
///
/// Should another global recorder be installed already, the handle is of a recorder that
/// nothing reports to, and a warning says so.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(TRANSITION_DURATION_SECONDS.to_owned()), DURATION_BUCKETS);
        let handle = match builder.map(PrometheusBuilder::install_recorder) {
            Ok(Ok(handle)) => handle,
            Ok(Err(error)) | Err(error) => {
                tracing::warn!(%error, "the Prometheus recorder is not installed: /metrics shows nothing");
                PrometheusBuilder::new().build_recorder().handle()
            }
        };
        telemetry::describe_metrics();
        let upkeep = handle.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        });
        handle
    })
}

/// `GET /metrics`: refreshes the outbox gauges from one read of the outbox, then renders every
/// metric of the process.
pub(super) async fn render<B: Ledger>(State(service): State<PaymentService<B>>) -> impl IntoResponse {
    match service.outbox().stats().await {
        Ok(stats) => stats.record(),
        Err(error) => tracing::warn!(%error, "reading the outbox stats for /metrics failed"),
    }
    ([(CONTENT_TYPE, PROMETHEUS_TEXT)], prometheus().render())
}
