//! Prometheus metrics through the Prometheus project's own Rust client
//! (`prometheus-client`), served by axum on a separate plain-HTTP port
//! (`metrics_listen`, by default 127.0.0.1:9464, `GET /metrics`):
//! - counters of transactions created and ended, refused OTPs, enrollments;
//! - `assent_rpc_duration_seconds{rpc}`: every call's handler time;
//! - `assent_flow_seconds{step}`: a login's steps — `scanned` and `decided`
//!   (since its creation) and `delivered` (from an event's commit to a
//!   subscriber's stream);
//! - gauges: device streams, calls in progress, waits for outcomes, and the
//!   database pool's connections.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::domain::{TransactionKind, TransactionState};
use crate::notify::Notifier;

/// Labels of a transaction counter by kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// Labels of a transaction counter by terminal state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// Labels of a call's duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabel {
    rpc: String,
}

/// Labels of a login step's duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabel {
    step: &'static str,
}

/// A step of a login, timed by [`Metrics::flow_step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowStep {
    /// Creation to the device's scan.
    Scanned,
    /// Creation to the device's decision.
    Decided,
    /// An event's commit to a subscriber's stream.
    Delivered,
}

impl FlowStep {
    fn label(self) -> &'static str {
        match self {
            Self::Scanned => "scanned",
            Self::Decided => "decided",
            Self::Delivered => "delivered",
        }
    }
}

/// Buckets from 0.25 ms to about 8 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The metrics of one server process.
pub struct Metrics {
    registry: Registry,
    created: Family<KindLabel, Counter>,
    ended: Family<StateLabel, Counter>,
    otp_refused: Counter,
    otp_unreserved: Counter,
    enrolled: Counter,
    rpc: Family<RpcLabel, Histogram, fn() -> Histogram>,
    flow: Family<StepLabel, Histogram, fn() -> Histogram>,
    calls_in_progress: Gauge,
    waits_in_progress: Gauge,
    device_streams: Gauge,
    pool_size: Gauge,
    pool_idle: Gauge,
    pool: std::sync::OnceLock<sqlx::PgPool>,
    /// The relay's counts as of the last render (sent, received payloads,
    /// received notices), brought up to the notifier's at each render.
    relayed: [Counter; 3],
    rendering: std::sync::Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("assent");
        let created = Family::<KindLabel, Counter>::default();
        registry.register(
            "transactions_created",
            "Transactions created",
            created.clone(),
        );
        let ended = Family::<StateLabel, Counter>::default();
        registry.register(
            "transactions_ended",
            "Transactions that reached a terminal state",
            ended.clone(),
        );
        let otp_refused = Counter::default();
        registry.register(
            "otp_refused",
            "OTP submissions refused",
            otp_refused.clone(),
        );
        let otp_unreserved = Counter::default();
        registry.register(
            "otp_scans_unreserved",
            "OTP scans decided on the copy this replica kept of the transaction it created, \
             without a reservation",
            otp_unreserved.clone(),
        );
        let enrolled = Counter::default();
        registry.register("devices_enrolled", "Devices enrolled", enrolled.clone());
        let rpc: Family<RpcLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "rpc_duration_seconds",
            "Handler time of each call, by RPC (streams: until the stream is set up)",
            rpc.clone(),
        );
        let flow: Family<StepLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "flow_seconds",
            "Login steps: scanned and decided (since creation), delivered (event commit to \
             subscriber)",
            flow.clone(),
        );
        let calls_in_progress = Gauge::default();
        registry.register(
            "calls_in_progress",
            "Calls being handled now (bounded by max_concurrent_requests)",
            calls_in_progress.clone(),
        );
        let waits_in_progress = Gauge::default();
        registry.register(
            "waits_in_progress",
            "WaitTransaction calls waiting now",
            waits_in_progress.clone(),
        );
        let device_streams = Gauge::default();
        registry.register(
            "device_streams",
            "Authenticated device streams on this server",
            device_streams.clone(),
        );
        let pool_size = Gauge::default();
        registry.register(
            "db_pool_connections",
            "Open connections of the PostgreSQL pool",
            pool_size.clone(),
        );
        let pool_idle = Gauge::default();
        registry.register(
            "db_pool_idle_connections",
            "Idle connections of the PostgreSQL pool",
            pool_idle.clone(),
        );
        let relayed: [Counter; 3] = Default::default();
        for (counter, (name, help)) in relayed.iter().zip([
            (
                "relay_payloads_sent",
                "NOTIFY payloads sent to the other replicas that need them",
            ),
            (
                "relay_payloads_received",
                "NOTIFY payloads received from other replicas (relay wake-ups)",
            ),
            (
                "relay_notices_received",
                "Notices received from other replicas",
            ),
        ]) {
            registry.register(name, help, counter.clone());
        }
        Self {
            registry,
            relayed,
            rendering: std::sync::Mutex::new(()),
            created,
            ended,
            otp_refused,
            otp_unreserved,
            enrolled,
            rpc,
            flow,
            calls_in_progress,
            waits_in_progress,
            device_streams,
            pool_size,
            pool_idle,
            pool: std::sync::OnceLock::new(),
        }
    }
}

impl Metrics {
    /// Counts a created transaction.
    pub fn transaction_created(&self, kind: TransactionKind) {
        let kind = match kind {
            TransactionKind::Otp => "otp",
            TransactionKind::Push => "push",
        };
        self.created.get_or_create(&KindLabel { kind }).inc();
    }

    /// Counts a transaction reaching a terminal state.
    pub fn transaction_ended(&self, state: TransactionState) {
        let state = match state {
            TransactionState::Pending => return,
            TransactionState::Scanned => return,
            TransactionState::Accepted => "accepted",
            TransactionState::Denied => "denied",
            TransactionState::Expired => "expired",
            TransactionState::Cancelled => "cancelled",
            TransactionState::Failed => "failed",
        };
        self.ended.get_or_create(&StateLabel { state }).inc();
    }

    /// Counts a refused OTP submission.
    pub fn otp_refused(&self) {
        self.otp_refused.inc();
    }

    /// Counts an OTP scan that skipped its reservation.
    pub fn otp_scanned_unreserved(&self) {
        self.otp_unreserved.inc();
    }

    /// Counts an enrolled device.
    pub fn device_enrolled(&self) {
        self.enrolled.inc();
    }

    /// Records a call's handler time; `rpc` is the method name.
    pub fn rpc_finished(&self, rpc: &str, elapsed: Duration) {
        self.rpc
            .get_or_create(&RpcLabel {
                rpc: rpc.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Records how long a login step took.
    pub fn flow_step(&self, step: FlowStep, elapsed: Duration) {
        self.flow
            .get_or_create(&StepLabel { step: step.label() })
            .observe(elapsed.as_secs_f64());
    }

    /// A call started; the guard ends it.
    pub fn call_started(&self) -> InProgress {
        self.calls_in_progress.inc();
        InProgress(self.calls_in_progress.clone())
    }

    /// A WaitTransaction started; the guard ends it.
    pub fn wait_started(&self) -> InProgress {
        self.waits_in_progress.inc();
        InProgress(self.waits_in_progress.clone())
    }

    /// Reports the connections of this PostgreSQL pool.
    pub fn watch_pool(&self, pool: sqlx::PgPool) {
        let _ = self.pool.set(pool);
    }

    /// The text exposition format, gauges read now.
    pub fn render(&self, notifier: &Notifier) -> String {
        let _rendering = self
            .rendering
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let counts = notifier.relayed();
        for (counter, now) in self.relayed.iter().zip([
            &counts.payloads_sent,
            &counts.payloads_received,
            &counts.notices_received,
        ]) {
            let now = now.load(std::sync::atomic::Ordering::Relaxed);
            counter.inc_by(now.saturating_sub(counter.get()));
        }
        self.device_streams
            .set(i64::try_from(notifier.session_count()).unwrap_or(i64::MAX));
        if let Some(pool) = self.pool.get() {
            self.pool_size.set(i64::from(pool.size()));
            self.pool_idle
                .set(i64::try_from(pool.num_idle()).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        if let Err(error) = encode(&mut out, &self.registry) {
            tracing::warn!(%error, "cannot encode the metrics");
        }
        out
    }
}

/// Something in progress, counted in a gauge until dropped.
#[derive(Debug)]
pub struct InProgress(Gauge);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Serves `GET /metrics` on `listener` until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    notifier: Arc<Notifier>,
    stop: CancellationToken,
) {
    async fn scrape(
        State((metrics, notifier)): State<(Arc<Metrics>, Arc<Notifier>)>,
    ) -> impl IntoResponse {
        (
            [(
                CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            metrics.render(&notifier),
        )
    }
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state((metrics, notifier));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(error) = served {
        tracing::warn!(%error, "the metrics endpoint stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_render_in_the_exposition_format() {
        let metrics = Metrics::default();
        metrics.transaction_created(TransactionKind::Push);
        metrics.transaction_ended(TransactionState::Accepted);
        metrics.transaction_ended(TransactionState::Accepted);
        metrics.rpc_finished("GetTransaction", Duration::from_millis(2));
        metrics.flow_step(FlowStep::Decided, Duration::from_millis(40));
        let text = metrics.render(&Notifier::new());
        assert!(
            text.contains("assent_transactions_created_total{kind=\"push\"} 1"),
            "{text}"
        );
        assert!(text.contains("assent_transactions_ended_total{state=\"accepted\"} 2"));
        assert!(text.contains("assent_device_streams 0"));
        assert!(text.contains("assent_rpc_duration_seconds_count{rpc=\"GetTransaction\"} 1"));
        assert!(text.contains("assent_flow_seconds_count{step=\"decided\"} 1"));
    }
}
