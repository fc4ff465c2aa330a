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
pub use grpc::limits::MAX_MESSAGE_BYTES;
pub use serve::{serve, serve_with_oidc};
pub use service::admin;
pub use startup::{OpenedStore, open_store};
pub use sweeper::CLOCK_SYNC_EVERY;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Engine, ServerConfig};
use domain::{Clock, SystemClock};
use startup::open_for_serving;
use store::StoreError;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another process already serves this SQLite file.
    #[error(
        "another assent-server already serves {0}; the embedded SQLite engine is \
         single-process: stop the other one, pick another --data-dir, or run several \
         replicas on PostgreSQL (ASSENT_DATABASE_URL=postgres://…)"
    )]
    AlreadyRunning(PathBuf),
    /// The data directory could not be prepared.
    #[error("cannot prepare the data directory {path}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// First-run setup failed.
    #[error(transparent)]
    FirstRun(#[from] first_run::FirstRunError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Plaintext on a non-loopback address was not explicitly allowed.
    #[error(
        "refusing to serve plaintext gRPC on {0} (not loopback): set ASSENT_TLS_CERT and \
         ASSENT_TLS_KEY (--tls-cert/--tls-key), listen on 127.0.0.1, or pass \
         --insecure-plaintext (ASSENT_INSECURE_PLAINTEXT=true) when a proxy terminates TLS \
         on a private network"
    )]
    InsecureListen(SocketAddr),
    /// TLS material could not be loaded.
    #[error("cannot load TLS certificate or key: {0}")]
    Tls(String),
    /// The CIBA provider could not start (its signing key).
    #[error("cannot start the CIBA provider: {0}")]
    Oidc(String),
    /// I/O failure.
    #[error("I/O error")]
    Io(#[from] std::io::Error),
    /// The reflection descriptor is broken (a build bug).
    #[error("reflection setup failed: {0}")]
    Reflection(String),
}

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

/// Where the use cases read the time.
#[derive(Clone)]
pub enum TimeSource {
    /// This base clock, disciplined to the database's clock (measured at
    /// start and every [`CLOCK_SYNC_EVERY`]): expiry is decided by the
    /// database's time, however far this host's clock is off.
    Database(Arc<dyn Clock>),
    /// Exactly this clock (tests move a manual one).
    Given(Arc<dyn Clock>),
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
    let opened = open_for_serving(&config).await?;
    if let Engine::Sqlite { path } = &opened.engine {
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        if let Some(key_file) = first_run::bootstrap(opened.store.as_ref(), dir).await? {
            println!("{}", first_run::banner(path, &key_file));
        }
    }
    serve(config, opened, listener, shutdown, time).await
}
