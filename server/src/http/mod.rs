//! The HTTP side of the server: the OpenID CIBA provider (docs/ciba.md) —
//! discovery, the JWKS, `/bc-authorize` and `/token` — as axum adapters
//! over [`crate::service::CibaService`]: decode the form, authenticate the
//! client, call one use case, encode the answer or the OAuth error
//! (`error.rs`, the one error → HTTP table).

mod error;
mod oidc;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::service::CibaService;

pub use oidc::router;

/// Where and as what the CIBA provider serves.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The listen address.
    pub listen: SocketAddr,
    /// The public base URL, the ID tokens' `iss`.
    pub issuer: String,
}

/// Serves the provider on `listener` until `shutdown` fires.
pub async fn serve(listener: TcpListener, ciba: Arc<CibaService>, shutdown: CancellationToken) {
    let app = router(ciba);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "the CIBA provider stopped");
    }
}
