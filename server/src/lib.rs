//! The Assent authentication server as a library: `main.rs` only parses
//! arguments and calls [`run`], and tests embed the same server on a random
//! port.
//!
//! Layout, dependencies pointing inward:
//! - [`domain`]: pure types and rules — ids, parsed input, secrets, the
//!   transaction aggregate (every rule of a transaction's life decided once,
//!   as a `Change`), devices and revocation, push fatigue, the clock.
//! - [`store`]: the storage traits; one engine logic over PostgreSQL and
//!   SQLite that differ only in SQL text; `apply(Change)` is the write side;
//!   events are ordered by position and read below the oldest running
//!   transaction.
//! - [`service`]: use cases (keys, enrollment, logins, push, confirmations,
//!   directory, events, upkeep) over shared dependencies.
//! - [`notify`]: publishes applied changes to subscribers and device
//!   sessions, and across replicas through PostgreSQL.
//! - [`session`]: one device's stream: hello, OTPs, decisions, notices,
//!   heartbeat; ends rather than dropping what must arrive.
//! - [`grpc`]: tonic adapters; `admission` (handler limit, deadline),
//!   `connection` (caps, handshake and idle timeouts, closable by a
//!   session), `status` (the error → status table).
//! - [`metrics`]: Prometheus counters, latency histograms and gauges on
//!   their own port.
//! - [`config`], [`telemetry`], [`shutdown`], [`admin`] (applications and
//!   API keys), [`first_run`], `sweeper`: the edges; the clock is disciplined
//!   to the database's ([`TimeSource`]).

pub mod config;
pub mod domain;
pub mod first_run;
pub mod grpc;
pub mod metrics;
pub mod notify;
pub mod service;
pub mod session;
pub mod shutdown;
pub mod store;
mod sweeper;
pub mod telemetry;

pub use domain::secure_rng;
pub use grpc::limits::MAX_MESSAGE_BYTES;
pub use service::admin;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use assent_proto::v1::device_service_server::DeviceServiceServer;
use assent_proto::v1::relying_party_service_server::RelyingPartyServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Engine, ServerConfig};
use domain::clock::DatabaseClock;
use domain::{Clock, SystemClock};
use grpc::{DeviceHandler, RelyingPartyHandler};
use notify::Notifier;
use service::Services;
use store::{PgStore, SqliteStore, Store, StoreError};

/// Concurrent HTTP/2 streams per connection.
const MAX_STREAMS_PER_CONNECTION: u32 = 128;

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
    /// I/O failure.
    #[error("I/O error")]
    Io(#[from] std::io::Error),
    /// The reflection descriptor is broken (a build bug).
    #[error("reflection setup failed: {0}")]
    Reflection(String),
}

/// An opened, migrated store and what it runs on.
pub struct OpenedStore {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The engine behind it.
    pub engine: Engine,
    /// The PostgreSQL pool, which also carries notifications between replicas.
    pub pool: Option<sqlx::PgPool>,
    /// Held while serving an embedded file, so a second server refuses it.
    _lock: Option<std::fs::File>,
}

/// Opens the configured store and applies its migrations (admin commands:
/// no single-process lock).
pub async fn open_store(config: &ServerConfig) -> Result<OpenedStore, ServerError> {
    let engine = config.engine();
    let (store, pool): (Arc<dyn Store>, _) = match &engine {
        Engine::Postgres { url } => {
            let store = PgStore::connect(url, config.pg_limits()).await?;
            store.migrate().await?;
            tracing::info!(engine = "postgres", "storage ready");
            let pool = store.pool().clone();
            (Arc::new(store), Some(pool))
        }
        Engine::Sqlite { path } => {
            prepare_dir(path)?;
            let store = SqliteStore::open(path).await?;
            store.migrate().await?;
            tracing::info!(engine = "sqlite", file = %path.display(), "storage ready");
            (Arc::new(store), None)
        }
    };
    Ok(OpenedStore {
        store,
        engine,
        pool,
        _lock: None,
    })
}

/// Creates the parent directory of the embedded database, owner-only.
fn prepare_dir(db: &Path) -> Result<(), ServerError> {
    let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    let error = |source| ServerError::DataDir {
        path: dir.to_owned(),
        source,
    };
    if !dir.exists() {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(error)?;
    }
    Ok(())
}

/// Opens the store for serving: an embedded file is locked for this process.
async fn open_for_serving(config: &ServerConfig) -> Result<OpenedStore, ServerError> {
    let lock = match config.engine() {
        Engine::Sqlite { path } => {
            prepare_dir(&path)?;
            let lock_path = path.with_extension("db.lock");
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|source| ServerError::DataDir {
                    path: lock_path.clone(),
                    source,
                })?;
            if file.try_lock().is_err() {
                return Err(ServerError::AlreadyRunning(path));
            }
            Some(file)
        }
        Engine::Postgres { .. } => None,
    };
    let mut opened = open_store(config).await?;
    opened._lock = lock;
    Ok(opened)
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

/// How often the offset to the database's clock is measured again.
pub const CLOCK_SYNC_EVERY: Duration = Duration::from_secs(30);

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

/// Serves an already opened store (held, with its lock, until the end).
pub async fn serve(
    config: ServerConfig,
    opened: OpenedStore,
    listener: TcpListener,
    shutdown: CancellationToken,
    time: TimeSource,
) -> Result<(), ServerError> {
    let local = listener.local_addr()?;
    let tls = tls_config(&config)?;
    if tls.is_none() && config.refuses_plaintext_on(local) {
        return Err(ServerError::InsecureListen(local));
    }
    let tasks = TaskTracker::new();
    // On PostgreSQL, several replicas may share the database: relay every
    // notification to them.
    let notifier = match &opened.pool {
        Some(pool) => {
            let (notifier, outbox) = Notifier::with_relay();
            tasks.spawn(notify::postgres::run(
                pool.clone(),
                Arc::clone(&notifier),
                Arc::clone(&opened.store),
                outbox,
                shutdown.clone(),
            ));
            notifier
        }
        None => Notifier::new(),
    };
    let clock: Arc<dyn Clock> = match time {
        TimeSource::Given(clock) => clock,
        TimeSource::Database(base) => {
            let clock = Arc::new(DatabaseClock::new(base));
            sync_clock(&clock, opened.store.as_ref()).await;
            tasks.spawn(keep_clock_synced(
                Arc::clone(&clock),
                Arc::clone(&opened.store),
                shutdown.clone(),
            ));
            clock
        }
    };
    let services = Services::new(Arc::clone(&opened.store), notifier, clock, config.limits());
    if let Some(pool) = &opened.pool {
        services.metrics().watch_pool(pool.clone());
    }
    tasks.spawn(sweeper::run(
        Arc::clone(&services),
        Duration::from_millis(config.sweep_interval_ms.max(10)),
        shutdown.clone(),
    ));
    tasks.spawn(sweeper::seal(Arc::clone(&services), shutdown.clone()));
    // This replica's presence lease: taken now, renewed until the stop.
    if let Err(error) = services.directory.renew_presence().await {
        tracing::warn!(%error, "cannot take the presence lease yet; retrying");
    }
    tasks.spawn(sweeper::presence(Arc::clone(&services), shutdown.clone()));
    // The event-signing key is made on the first start (by whichever
    // replica gets there first); a failure here is retried on first use.
    let deps = &services.deps;
    match deps
        .signer
        .ensure(deps.store.as_ref(), deps.clock.now())
        .await
    {
        Ok(key_id) => tracing::info!(key_id, "event-signing key"),
        Err(error) => tracing::warn!(%error, "cannot read the event-signing key yet"),
    }

    if let Some(addr) = config.metrics_listen {
        match TcpListener::bind(addr).await {
            Ok(listener) => {
                tracing::info!(address = %addr, "metrics on http://{addr}/metrics");
                tasks.spawn(metrics::serve(
                    listener,
                    Arc::clone(services.metrics()),
                    Arc::clone(services.notifier()),
                    shutdown.clone(),
                ));
            }
            // Metrics are not worth refusing to serve logins for.
            Err(error) => tracing::warn!(address = %addr, %error, "metrics endpoint not started"),
        }
    }

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<RelyingPartyServiceServer<RelyingPartyHandler>>()
        .await;
    health
        .set_serving::<DeviceServiceServer<DeviceHandler>>()
        .await;
    // Draining is visible at once: load balancers and watchers stop sending
    // new work while in-flight calls finish.
    let draining = health.clone();
    let drain_signal = shutdown.clone();
    tasks.spawn(async move {
        drain_signal.cancelled().await;
        draining
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        draining
            .set_not_serving::<RelyingPartyServiceServer<RelyingPartyHandler>>()
            .await;
        draining
            .set_not_serving::<DeviceServiceServer<DeviceHandler>>()
            .await;
        tracing::info!("draining: health reports NOT_SERVING");
    });
    // Both reflection versions: grpcurl speaks v1, stock Python tooling
    // (grpcio-reflection) still v1alpha.
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(assent_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder()
        .build_v1()
        .map_err(|error| ServerError::Reflection(error.to_string()))?;
    let reflection_alpha = reflection_builder()
        .build_v1alpha()
        .map_err(|error| ServerError::Reflection(error.to_string()))?;
    let relying_party = RelyingPartyServiceServer::new(RelyingPartyHandler::new(
        Arc::clone(&services),
        tasks.clone(),
        shutdown.clone(),
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let device = DeviceServiceServer::new(DeviceHandler::new(
        Arc::clone(&services),
        tasks.clone(),
        shutdown.clone(),
        Duration::from_millis(config.stream_send_timeout_ms),
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let admission = grpc::admission::AdmissionLayer::new(
        config.max_concurrent_requests,
        Duration::from_millis(config.request_timeout_ms),
        Arc::clone(services.metrics()),
    );
    let routes = tonic::service::Routes::new(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(relying_party)
        .add_service(device)
        .prepare();
    let service = tower::ServiceBuilder::new()
        .layer(admission)
        .layer(tower::util::MapResponseLayer::new(
            grpc::limits::oversized_to_resource_exhausted::<tonic::body::Body>,
        ))
        .service(routes);
    let connections = grpc::connection::Connections::new(config.connection_limits());
    let settings = grpc::transport::Http2Settings {
        max_streams: MAX_STREAMS_PER_CONNECTION,
        max_header_list_bytes: 16 * 1024,
        keepalive_interval: Duration::from_secs(20),
        keepalive_timeout: Duration::from_secs(10),
    };
    tracing::info!(address = %local, tls = tls.is_some(), "assent-server listening");
    let server = grpc::transport::serve(
        listener,
        connections,
        tls,
        settings,
        service,
        shutdown.clone(),
    );

    let drain = Duration::from_secs(config.drain_timeout_seconds);
    tokio::select! {
        () = server => {}
        () = async { shutdown.cancelled().await; tokio::time::sleep(drain).await } => {
            tracing::warn!("drain deadline passed; closing remaining connections");
        }
    }
    tasks.close();
    if tokio::time::timeout(drain, tasks.wait()).await.is_err() {
        tracing::warn!("background tasks did not stop within the drain deadline");
    }
    // Streams held here no longer count as connected anywhere.
    services.directory.presence_stopped().await;
    drop(opened);
    tracing::info!("assent-server stopped");
    Ok(())
}

/// Measures the offset to the database's clock once; a failure keeps the
/// last offset (the database being away is reported by the calls).
async fn sync_clock(clock: &DatabaseClock<Arc<dyn Clock>>, store: &dyn Store) {
    let before = clock.base_now();
    match store.database_time().await {
        Ok(database) => {
            let offset = clock.measured(before, database, clock.base_now());
            if offset.abs() > chrono::TimeDelta::seconds(1) {
                tracing::warn!(
                    offset_ms = offset.num_milliseconds(),
                    "this host's clock is off from the database's; using the database's"
                );
            }
        }
        Err(error) => tracing::debug!(%error, "cannot read the database's clock"),
    }
}

/// Measures the offset to the database's clock every [`CLOCK_SYNC_EVERY`].
async fn keep_clock_synced(
    clock: Arc<DatabaseClock<Arc<dyn Clock>>>,
    store: Arc<dyn Store>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(CLOCK_SYNC_EVERY) => sync_clock(&clock, store.as_ref()).await,
        }
    }
}

/// The TLS acceptor of the gRPC port (HTTP/2 only, ring provider), when a
/// certificate is configured.
fn tls_config(config: &ServerConfig) -> Result<Option<grpc::transport::TlsAcceptor>, ServerError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = match (&config.tls_cert, &config.tls_key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        _ => {
            return Err(ServerError::Tls(
                "set both --tls-cert and --tls-key, or neither".to_owned(),
            ));
        }
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(ServerError::Tls(format!(
            "{}: no PEM certificate found",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Some(grpc::transport::TlsAcceptor::from(Arc::new(tls))))
}
