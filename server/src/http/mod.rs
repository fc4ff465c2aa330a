//! The HTTP side of the server: the OpenID CIBA provider (docs/ciba.md) —
//! discovery, the JWKS, `/bc-authorize` and `/token` — as axum adapters
//! over [`crate::service::CibaService`]: decode the form, authenticate the
//! client, call one use case, encode the answer or the OAuth error
//! (`error.rs`, the one error → HTTP table). Served over HTTP/1.1, in TLS
//! with the gRPC port's certificate when it has one, every connection and
//! request bounded.

mod error;
mod oidc;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::service::CibaService;

pub use oidc::{Peer, router};

/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 1_024;

/// How long a TLS handshake, a request's headers (also the wait for the
/// next request on a kept-alive connection) and a whole request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request body read (the forms are a few hundred bytes).
pub const MAX_BODY: usize = 16 * 1024;

/// Serves the provider on `listener` until `shutdown` fires, in TLS when
/// `tls` is given (the gRPC port's acceptor, its certificate reloaded with
/// it; ALPN `http/1.1`).
pub async fn serve(
    listener: TcpListener,
    ciba: Arc<CibaService>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
) {
    let app = bounded(router(ciba));
    let tls = tls.map(|acceptor| {
        let mut config = (**acceptor.config()).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = Arc::clone(&slots).acquire_owned() => permit,
        };
        let Ok(permit) = permit else { break };
        let (tcp, from) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, say: wait rather than spin.
                    tracing::warn!(%error, "the CIBA provider could not accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone().layer(axum::Extension(Peer(from.ip())));
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            match tls {
                None => connection(tcp, app, shutdown).await,
                Some(acceptor) => {
                    match tokio::time::timeout(REQUEST_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => connection(stream, app, shutdown).await,
                        Ok(Err(error)) => tracing::debug!(%error, "CIBA TLS handshake failed"),
                        Err(_) => tracing::debug!("CIBA TLS handshake timed out"),
                    }
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

/// One HTTP/1.1 connection, ended gracefully at `shutdown`.
async fn connection<S>(io: S, app: Router, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(REQUEST_TIMEOUT)
        .max_buf_size(64 * 1024);
    let served = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    tokio::pin!(served);
    let result = tokio::select! {
        result = served.as_mut() => result,
        () = shutdown.cancelled() => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "CIBA connection ended");
    }
}

/// `app` with the body limit and the per-request deadline.
fn bounded(app: Router) -> Router {
    app.layer(middleware::from_fn(deadline))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// A request (its body read included) not answered within
/// [`REQUEST_TIMEOUT`] is answered 408.
async fn deadline(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::REQUEST_TIMEOUT, "request timed out").into_response(),
    }
}
