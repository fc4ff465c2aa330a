//! What every call passes before a handler runs: a process-wide bound on
//! handlers running at once (more are shed with `UNAVAILABLE`, never
//! queued), a deadline on the handler (`DEADLINE_EXCEEDED`), and the
//! bookkeeping that tells a connection it is in use until the response,
//! stream included, has ended — so idle connections can be closed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;
use tonic::Code;
use tonic::body::Body;
use tonic::codegen::http;
use tower::{Layer, Service};

use super::connection::{self, InUse};
use super::status;
use crate::metrics::Metrics;
use crate::service::{Refused, RefusedExt, reason};

/// The bounds calls are admitted under.
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    permits: Arc<Semaphore>,
    deadline: Duration,
    metrics: Arc<Metrics>,
}

impl AdmissionLayer {
    /// At most `concurrent` handlers at once, each within `deadline`, each
    /// timed into `metrics`.
    pub fn new(concurrent: usize, deadline: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrent.max(1))),
            deadline,
            metrics,
        }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Admission<S> {
        Admission {
            inner,
            permits: Arc::clone(&self.permits),
            deadline: self.deadline,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// See [`AdmissionLayer`].
#[derive(Debug, Clone)]
pub struct Admission<S> {
    inner: S,
    permits: Arc<Semaphore>,
    deadline: Duration,
    metrics: Arc<Metrics>,
}

type Boxed<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for Admission<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Boxed<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let in_use = request
            .extensions()
            .get::<connection::ConnectionInfo>()
            .map(|info| info.in_use());
        let timing = Timing::start(&self.metrics, request.uri().path());
        // WaitTransaction is a long poll: it holds no handler slot (the
        // service bounds waits on its own) and may outlast the deadline by
        // its own longest timeout.
        if request.uri().path() == WAIT_PATH {
            let deadline = self.deadline + crate::service::MAX_WAIT;
            let handler = self.inner.call(request);
            return Box::pin(async move {
                match tokio::time::timeout(deadline, handler).await {
                    Ok(response) => response.inspect(|response| timing.finish(response)),
                    Err(_) => Ok(status::plain(
                        Code::DeadlineExceeded,
                        reason::DEADLINE_EXCEEDED,
                        "the wait did not finish in time",
                    )
                    .into_http()),
                }
            });
        }
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            return Box::pin(async {
                Ok(status::refusal(
                    Code::Unavailable,
                    &Refused::new(
                        reason::SERVER_BUSY,
                        "the server is at its limit of calls in progress; retry with backoff",
                    )
                    .retry_after(Duration::from_millis(100)),
                )
                .into_http())
            });
        };
        let deadline = self.deadline;
        let handler = self.inner.call(request);
        let in_progress = self.metrics.call_started();
        Box::pin(async move {
            let response = match tokio::time::timeout(deadline, handler).await {
                Ok(response) => response.inspect(|response| timing.finish(response))?,
                Err(_) => {
                    return Ok(status::plain(
                        Code::DeadlineExceeded,
                        reason::DEADLINE_EXCEEDED,
                        format!(
                            "the call did not finish within the server's {} ms deadline",
                            deadline.as_millis()
                        ),
                    )
                    .into_http());
                }
            };
            drop(permit);
            drop(in_progress);
            Ok(response.map(|body| match in_use {
                Some(in_use) => Body::new(Tracked {
                    body,
                    _in_use: in_use,
                }),
                None => body,
            }))
        })
    }
}

/// A call's handler time, recorded under its method name once the handler
/// answered (an unknown method, answered `UNIMPLEMENTED`, as `unknown`, so
/// made-up paths cannot grow the label set).
struct Timing {
    metrics: Arc<Metrics>,
    method: String,
    started: std::time::Instant,
}

impl Timing {
    fn start(metrics: &Arc<Metrics>, path: &str) -> Self {
        let method = path.rsplit('/').next().unwrap_or_default();
        Self {
            metrics: Arc::clone(metrics),
            method: method.chars().take(64).collect(),
            started: std::time::Instant::now(),
        }
    }

    fn finish(&self, response: &http::Response<Body>) {
        let unimplemented = response
            .headers()
            .get("grpc-status")
            .is_some_and(|status| status == "12");
        let method = if unimplemented || self.method.is_empty() {
            "unknown"
        } else {
            &self.method
        };
        self.metrics.rpc_finished(method, self.started.elapsed());
    }
}

/// The long-poll RPC.
const WAIT_PATH: &str = "/assent.v1.RelyingPartyService/WaitTransaction";

/// A response body that keeps its connection marked in use until it ends.
struct Tracked {
    body: Body,
    _in_use: InUse,
}

impl http_body::Body for Tracked {
    type Data = <Body as http_body::Body>::Data;
    type Error = <Body as http_body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
