//! The Assent authentication server as a library: the binary
//! (`bin/assent-server/`) only parses arguments and calls [`run`], and tests
//! embed the same server on a random port. `docs/architecture.md` draws the
//! layers and a login's path through them.
//!
//! Layout, dependencies pointing inward (no import runs back up):
//! - [`domain`]: pure types and rules — ids, parsed input, secrets, the
//!   transaction aggregate (every rule of a transaction's life decided once,
//!   as a `Change`), devices and revocation, push fatigue, the clock and the
//!   randomness source.
//! - [`store`]: the storage traits; one engine logic over PostgreSQL and
//!   SQLite that differ only in SQL text; `apply(Change)` is the write side;
//!   events are ordered by position and read below the oldest running
//!   transaction.
//! - [`notify`]: publishes applied changes to subscribers and device
//!   sessions, and across replicas through PostgreSQL.
//! - [`service`]: use cases (keys, enrollment, logins, push, confirmations,
//!   directory, events, upkeep, audit, admin) over shared dependencies.
//! - [`session`]: one device's stream in domain terms (`FromDevice` in,
//!   `ToDevice` out): hello, OTPs, decisions, notices, heartbeat; ends rather
//!   than dropping what must arrive.
//! - [`grpc`]: the wire — `transport` (HTTP/2 and TLS, a task per stream
//!   that a session resets alone), `connection` (caps, handshake and idle
//!   timeouts), `admission` (handler limit, deadline), handlers, `status`
//!   (the error → status table).
//! - [`metrics`]: Prometheus counters, latency histograms and gauges on
//!   their own port.
//! - entrances and edges: [`startup`] (opening the store), `serve` (the
//!   serving steps), [`config`], [`telemetry`], [`shutdown`], [`first_run`],
//!   `sweeper` (background upkeep; the clock is disciplined to the
//!   database's, [`TimeSource`]).

pub mod config;
pub mod domain;
mod error;
pub mod first_run;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod notify;
mod serve;
pub mod service;
pub mod session;
pub mod shutdown;
pub mod startup;
pub mod store;
mod sweeper;
pub mod telemetry;

pub use domain::secure_rng;
pub use error::ServerError;
pub use grpc::limits::MAX_MESSAGE_BYTES;
pub use serve::{TimeSource, serve, serve_with_oidc};
pub use service::admin;
pub use startup::{OpenedStore, open_store};
pub use sweeper::CLOCK_SYNC_EVERY;

use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Engine, ServerConfig};
use domain::{Clock, SystemClock};
use startup::open_for_serving;

/// Opens the store and serves on `listener` until `shutdown` fires, then drains.
/// On an empty embedded store, first creates the `default` application.
pub async fn run(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let time = TimeSource::Database(Arc::new(SystemClock));
    run_with_time(config, listener, shutdown, time).await
}

/// [`run`] with the clock the use cases read (tests move a manual one).
pub async fn run_with_clock(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
) -> Result<(), ServerError> {
    run_with_time(config, listener, shutdown, TimeSource::Given(clock)).await
}

/// [`run`] with a chosen time source.
pub async fn run_with_time(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
    time: TimeSource,
) -> Result<(), ServerError> {
    // What can refuse the start is checked before anything is created.
    let local = listener.local_addr()?;
    if config.refuses_plaintext_on(local) {
        return Err(ServerError::InsecureListen(local));
    }
    // The OIDC port speaks TLS with the gRPC port's certificate; without
    // one, the same plaintext guard.
    if let Some(at) = config.oidc_listen
        && config.refuses_plaintext_on(at)
    {
        return Err(ServerError::Oidc(format!(
            "refusing to serve it in plaintext on {at} (not loopback): set --tls-cert and \
             --tls-key (the OIDC port uses the gRPC port's certificate), listen on 127.0.0.1 \
             behind a TLS proxy, or pass --insecure-plaintext when a proxy terminates TLS on \
             a private network"
        )));
    }
    let oidc = match config.oidc_listen {
        Some(at) => {
            let listener = TcpListener::bind(at)
                .await
                .map_err(|error| ServerError::Oidc(format!("cannot listen on {at}: {error}")))?;
            let issuer = config.oidc_issuer(listener.local_addr()?);
            Some((listener, issuer))
        }
        None => None,
    };
    let opened = open_for_serving(&config).await?;
    if let Engine::Sqlite { path } = &opened.engine {
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        if let Some(key_file) = first_run::bootstrap(opened.store.as_ref(), dir).await? {
            println!("{}", first_run::banner(path, &key_file));
        }
    }
    serve_with_oidc(config, opened, listener, shutdown, time, oidc).await
}
