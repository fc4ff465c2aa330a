//! The HTTP/2 server under the gRPC services: accepts admitted connections
//! (TLS when configured), serves each with hyper, and runs every request
//! stream as a task of its own that can be reset alone.
//!
//! Why not tonic's own `Server`: a device session that must end while its
//! peer does not read cannot finish its stream (HTTP/2 flow control holds
//! its last frames back), and hyper never polls the response body of a
//! stream that waits for window. The only way to end that stream alone is
//! to drop the task serving it — h2 then sends `RST_STREAM(CANCEL)` for that
//! stream and nothing else. This module's executor runs each stream under a
//! [`StreamReset`] handle that the handler reads while it runs; everything
//! else (the connection, its other streams) carries on.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::transport::server::Connected as _;
use tower::{Service, ServiceExt as _};

use super::connection::{ClosableIo, Connections};
use super::tls::TlsAcceptor;

/// HTTP/2 settings of the gRPC port.
#[derive(Debug, Clone, Copy)]
pub struct Http2Settings {
    /// Concurrent streams per connection.
    pub max_streams: u32,
    /// Largest header block accepted, in bytes.
    pub max_header_list_bytes: u32,
    /// Interval of keepalive pings to a quiet peer.
    pub keepalive_interval: Duration,
    /// How long a keepalive ping may go unanswered before the connection
    /// is closed.
    pub keepalive_timeout: Duration,
    /// How long a request (other than a device's `Connect` stream) may take
    /// to arrive whole; a peer that does not finish one in time has its
    /// connection closed.
    pub request_read_timeout: Duration,
}

/// The one RPC whose request is a long-lived stream.
const STREAMING_REQUEST: &str = "/assent.v1.DeviceService/Connect";

/// A request body that must end before a deadline.
struct ReadDeadline {
    body: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    connection: super::connection::ConnectionInfo,
    is_done: bool,
}

impl http_body::Body for ReadDeadline {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.is_done {
            return Pin::new(&mut this.body).poll_frame(cx).map_err(Into::into);
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.is_done = frame.is_none() || this.body.is_end_stream();
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    tracing::info!("a request was not finished in time; closing its connection");
                    this.connection.misbehaved();
                    this.is_done = true;
                    Poll::Ready(Some(Err("the request was not finished in time".into())))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

tokio::task_local! {
    /// The reset handle of the stream whose task is being polled.
    static CURRENT: CancellationToken;
}

/// Ends one HTTP/2 stream — only that one — from inside its handler.
#[derive(Debug, Clone, Default)]
pub struct StreamReset(CancellationToken);

impl StreamReset {
    /// The handle of the stream the calling handler serves; a handle that
    /// resets nothing outside this server's transport (in-process tests).
    pub fn current() -> Self {
        CURRENT
            .try_with(|token| Self(token.clone()))
            .unwrap_or_default()
    }

    /// The token that resets the stream (`RST_STREAM(CANCEL)`) when
    /// cancelled: its task stops at once, whatever it was waiting for, and
    /// the connection carries on.
    pub fn into_token(self) -> CancellationToken {
        self.0
    }
}

/// Spawns hyper's per-stream tasks, each resettable by its handler.
#[derive(Clone)]
struct StreamExecutor {
    tasks: TaskTracker,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        let token = CancellationToken::new();
        self.tasks.spawn(Resettable {
            reset: Box::pin(token.clone().cancelled_owned()),
            token,
            stream: Box::pin(stream),
        });
    }
}

/// One stream's task: runs until done or reset (then dropped, which makes
/// h2 reset the stream).
struct Resettable<F> {
    token: CancellationToken,
    reset: Pin<Box<WaitForCancellationFutureOwned>>,
    stream: Pin<Box<F>>,
}

impl<F: Future<Output = ()>> Future for Resettable<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.reset.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        let stream = &mut this.stream;
        CURRENT.sync_scope(this.token.clone(), || stream.as_mut().poll(cx))
    }
}

/// Serves `service` on `listener` until `shutdown` fires, then lets the
/// open connections finish their calls (HTTP/2 GOAWAY) and returns once
/// they have closed.
pub async fn serve<S>(
    listener: TcpListener,
    connections: Arc<Connections>,
    tls: Option<TlsAcceptor>,
    settings: Http2Settings,
    service: S,
    shutdown: CancellationToken,
) where
    S: Service<Request<Body>, Response = Response<Body>, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let tasks = TaskTracker::new();
    let mut builder = hyper::server::conn::http2::Builder::new(StreamExecutor {
        tasks: tasks.clone(),
    });
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(settings.max_streams)
        .max_header_list_size(settings.max_header_list_bytes)
        .keep_alive_interval(Some(settings.keepalive_interval))
        .keep_alive_timeout(settings.keepalive_timeout);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, most likely: give the open ones a
                // moment instead of spinning on accept.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        configure_socket(&stream, peer);
        let Some(io) = connections.admit(stream) else {
            continue;
        };
        tasks.spawn(serve_connection(
            io,
            tls.clone(),
            builder.clone(),
            settings,
            service.clone(),
            shutdown.clone(),
        ));
    }
    // Stop accepting at once (the port closes), then wait for the rest.
    drop(listener);
    tasks.close();
    tasks.wait().await;
}

/// No Nagle delay; TCP keepalive so dead peers are found under NAT.
fn configure_socket(stream: &tokio::net::TcpStream, peer: SocketAddr) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
    let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
    if let Err(error) = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive) {
        tracing::debug!(%peer, %error, "cannot set TCP keepalive");
    }
}

/// Serves one admitted connection to its end.
async fn serve_connection<S>(
    io: ClosableIo,
    tls: Option<TlsAcceptor>,
    builder: hyper::server::conn::http2::Builder<StreamExecutor>,
    settings: Http2Settings,
    service: S,
    shutdown: CancellationToken,
) where
    S: Service<Request<Body>, Response = Response<Body>, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let info = io.connect_info();
    let read_timeout = settings.request_read_timeout;
    let service = TowerToHyperService::new(tower::service_fn(move |request: Request<Incoming>| {
        let mut request = if request.uri().path() == STREAMING_REQUEST {
            request.map(Body::new)
        } else {
            let connection = info.clone();
            request.map(|body| {
                Body::new(ReadDeadline {
                    body,
                    deadline: Box::pin(tokio::time::sleep(read_timeout)),
                    connection,
                    is_done: false,
                })
            })
        };
        request.extensions_mut().insert(info.clone());
        service.clone().oneshot(request)
    }));
    match tls {
        None => {
            drive(
                builder.serve_connection(TokioIo::new(io), service),
                shutdown,
            )
            .await
        }
        // Boxed: the TLS state would make every plaintext connection's task
        // as large as a TLS one (issue 21: memory per idle agent).
        Some(acceptor) => Box::pin(serve_tls(io, acceptor, builder, service, shutdown)).await,
    }
}

/// Serves one connection over TLS to its end.
async fn serve_tls<S>(
    io: ClosableIo,
    acceptor: TlsAcceptor,
    builder: hyper::server::conn::http2::Builder<StreamExecutor>,
    service: S,
    shutdown: CancellationToken,
) where
    S: hyper::service::HttpService<Incoming, ResBody = Body> + Send + 'static,
    S::Future: Send + 'static,
{
    // A handshake that never finishes is bounded by the connection's
    // first-request timeout (`ClosableIo`).
    match acceptor.accept(io).await {
        Ok(io) => {
            drive(
                builder.serve_connection(TokioIo::new(io), service),
                shutdown,
            )
            .await
        }
        Err(error) => tracing::debug!(%error, "TLS handshake failed"),
    }
}

/// Runs a connection; on shutdown asks it to finish gracefully.
///
/// Not an async fn: one would keep the connection twice in its task (the
/// argument and the pinned copy), and a connection is ~1.7 KB; boxed here, it
/// is kept once (issue 21: memory per idle agent).
fn drive<C>(connection: C, shutdown: CancellationToken) -> impl Future<Output = ()>
where
    C: Future<Output = Result<(), hyper::Error>> + GracefulConnection,
{
    let mut connection = Box::pin(connection);
    async move {
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = shutdown.cancelled() => {
                connection.as_mut().graceful();
                connection.await
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, "connection ended with an error");
        }
    }
}

/// A connection that can be asked to finish its streams and close.
trait GracefulConnection {
    /// Sends GOAWAY: no new streams, the open ones finish.
    fn graceful(self: Pin<&mut Self>);
}

impl<I, S, E> GracefulConnection for hyper::server::conn::http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<Incoming>,
    S::ResBody: http_body::Body + Send + 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}
