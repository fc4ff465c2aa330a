//! Prometheus metrics: counters kept by the services, rendered in the text
//! exposition format on a separate plain-HTTP port (`metrics_listen`, by
//! default 127.0.0.1:9464). The endpoint answers `GET /metrics` only, reads
//! at most 8 KiB of request with a 5 s deadline, and closes every connection.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::{TransactionKind, TransactionState};
use crate::notify::Notifier;

/// Longest request head read.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a scraper may take to send its request.
const READ_DEADLINE: Duration = Duration::from_secs(5);

const KINDS: [TransactionKind; 2] = [TransactionKind::Otp, TransactionKind::Push];
const ENDINGS: [TransactionState; 5] = [
    TransactionState::Accepted,
    TransactionState::Denied,
    TransactionState::Expired,
    TransactionState::Cancelled,
    TransactionState::Failed,
];

/// Counters of one server process.
#[derive(Debug, Default)]
pub struct Metrics {
    created: [AtomicU64; 2],
    ended: [AtomicU64; 5],
    otp_refused: AtomicU64,
    enrolled: AtomicU64,
}

impl Metrics {
    /// Counts a created transaction.
    pub fn transaction_created(&self, kind: TransactionKind) {
        if let Some(i) = KINDS.iter().position(|k| *k == kind) {
            self.created[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a transaction reaching a terminal state.
    pub fn transaction_ended(&self, state: TransactionState) {
        if let Some(i) = ENDINGS.iter().position(|s| *s == state) {
            self.ended[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a refused OTP submission.
    pub fn otp_refused(&self) {
        self.otp_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an enrolled device.
    pub fn device_enrolled(&self) {
        self.enrolled.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition format.
    pub fn render(&self, notifier: &Notifier) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP assent_transactions_created_total Transactions created."
        );
        let _ = writeln!(out, "# TYPE assent_transactions_created_total counter");
        for (kind, count) in KINDS.iter().zip(&self.created) {
            let _ = writeln!(
                out,
                "assent_transactions_created_total{{kind=\"{}\"}} {}",
                kind.as_str().to_lowercase(),
                count.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP assent_transactions_ended_total Transactions that reached a terminal state."
        );
        let _ = writeln!(out, "# TYPE assent_transactions_ended_total counter");
        for (state, count) in ENDINGS.iter().zip(&self.ended) {
            let _ = writeln!(
                out,
                "assent_transactions_ended_total{{state=\"{}\"}} {}",
                state.as_str().to_lowercase(),
                count.load(Ordering::Relaxed)
            );
        }
        let simple = [
            (
                "assent_otp_refused_total",
                "counter",
                "OTP submissions refused.",
                self.otp_refused.load(Ordering::Relaxed),
            ),
            (
                "assent_devices_enrolled_total",
                "counter",
                "Devices enrolled.",
                self.enrolled.load(Ordering::Relaxed),
            ),
            (
                "assent_device_streams",
                "gauge",
                "Authenticated device streams on this server.",
                notifier.session_count(),
            ),
        ];
        for (name, kind, help, value) in simple {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

/// Serves `GET /metrics` on `listener` until `stop` fires.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    notifier: Arc<Notifier>,
    stop: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((mut socket, _)) = accepted else {
            continue;
        };
        let body = metrics.render(&notifier);
        connections.spawn(async move {
            let mut head = Vec::with_capacity(512);
            let read = tokio::time::timeout(READ_DEADLINE, async {
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
            })
            .await;
            let response = if read.is_ok() && head.starts_with(b"GET /metrics ") {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
            };
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
    connections.close();
    connections.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_the_exposition_format() {
        let metrics = Metrics::default();
        metrics.transaction_created(TransactionKind::Push);
        metrics.transaction_ended(TransactionState::Accepted);
        metrics.transaction_ended(TransactionState::Accepted);
        let text = metrics.render(&Notifier::new());
        assert!(text.contains("assent_transactions_created_total{kind=\"push\"} 1"));
        assert!(text.contains("assent_transactions_ended_total{state=\"accepted\"} 2"));
        assert!(text.contains("assent_device_streams 0"));
    }
}
