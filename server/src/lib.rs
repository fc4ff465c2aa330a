//! The Assent authentication server as a library: `main.rs` only parses
//! arguments and calls [`run`], and tests embed the same server on a random
//! port.
//!
//! Layout, dependencies pointing inward:
//! - [`domain`]: pure types and rules (ids, parsed input, secrets, states).
//! - [`store`]: the storage traits and the PostgreSQL engine.
//! - [`service`]: use cases over a store and the notifier.
//! - [`notify`]: wake-ups for subscribers and commands for device sessions.
//! - [`grpc`]: tonic adapters and the one error → status table.
//! - [`config`], [`telemetry`], [`shutdown`], [`admin`]: the edges.

pub mod admin;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod notify;
pub mod service;
pub mod shutdown;
pub mod store;
mod sweeper;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use assent_proto::v1::device_service_server::DeviceServiceServer;
use assent_proto::v1::relying_party_service_server::RelyingPartyServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

pub use config::ServerConfig;
use grpc::{DeviceHandler, RelyingPartyHandler};
use notify::Notifier;
use service::AuthService;
use store::{PgStore, Store, StoreError};

/// Largest gRPC message accepted or sent on any service (SPEC §6).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Concurrent HTTP/2 streams per connection.
const MAX_STREAMS_PER_CONNECTION: u32 = 128;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// No database was configured.
    #[error(
        "no database configured: set ASSENT_DATABASE_URL=postgres://USER@HOST:5432/DB \
         (or pass --database-url)"
    )]
    NoDatabase,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Plaintext on a non-loopback address was not explicitly allowed.
    #[error(
        "refusing to serve plaintext gRPC on non-loopback address {0}: configure \
         --tls-cert/--tls-key, or pass --insecure-plaintext if a proxy terminates TLS"
    )]
    InsecureListen(SocketAddr),
    /// TLS material could not be loaded.
    #[error("cannot load TLS certificate or key: {0}")]
    Tls(String),
    /// Socket or transport failure.
    #[error("transport error")]
    Transport(#[from] tonic::transport::Error),
    /// I/O failure.
    #[error("I/O error")]
    Io(#[from] std::io::Error),
    /// The reflection descriptor is broken (a build bug).
    #[error("reflection setup failed: {0}")]
    Reflection(String),
}

/// Opens the configured store and applies its migrations.
pub async fn open_store(config: &ServerConfig) -> Result<Arc<dyn Store>, ServerError> {
    let url = config
        .database_url
        .as_deref()
        .ok_or(ServerError::NoDatabase)?;
    let store = PgStore::connect(url, config.max_db_connections).await?;
    store.migrate().await?;
    tracing::info!(engine = "postgres", "storage ready");
    Ok(Arc::new(store))
}

/// Opens the store and serves on `listener` until `shutdown` fires, then drains.
pub async fn run(
    config: ServerConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let store = open_store(&config).await?;
    serve(config, store, listener, shutdown).await
}

/// Serves an already opened store.
pub async fn serve(
    config: ServerConfig,
    store: Arc<dyn Store>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServerError> {
    let local = listener.local_addr()?;
    let tls = tls_config(&config)?;
    if tls.is_none() && !local.ip().is_loopback() && !config.insecure_plaintext {
        return Err(ServerError::InsecureListen(local));
    }
    let service = Arc::new(AuthService::new(store, Notifier::new(), config.limits()));
    let tasks = TaskTracker::new();
    tasks.spawn(sweeper::run(
        Arc::clone(&service),
        Duration::from_millis(config.sweep_interval_ms.max(10)),
        shutdown.clone(),
    ));

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<RelyingPartyServiceServer<RelyingPartyHandler>>()
        .await;
    health
        .set_serving::<DeviceServiceServer<DeviceHandler>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(assent_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|error| ServerError::Reflection(error.to_string()))?;
    let relying_party = RelyingPartyServiceServer::new(RelyingPartyHandler::new(
        Arc::clone(&service),
        tasks.clone(),
        shutdown.clone(),
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let device = DeviceServiceServer::new(DeviceHandler::new(
        Arc::clone(&service),
        tasks.clone(),
        shutdown.clone(),
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let mut builder = Server::builder()
        .layer(tower::util::MapResponseLayer::new(
            grpc::limits::oversized_to_resource_exhausted::<tonic::body::Body>,
        ))
        .http2_keepalive_interval(Some(Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_max_header_list_size(16 * 1024);
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    tracing::info!(address = %local, tls = config.tls_cert.is_some(), "assent-server listening");
    let server = builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(relying_party)
        .add_service(device)
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());

    let drain = Duration::from_secs(config.drain_timeout_seconds);
    tokio::select! {
        result = server => result?,
        () = async { shutdown.cancelled().await; tokio::time::sleep(drain).await } => {
            tracing::warn!("drain deadline passed; closing remaining connections");
        }
    }
    tasks.close();
    if tokio::time::timeout(drain, tasks.wait()).await.is_err() {
        tracing::warn!("background tasks did not stop within the drain deadline");
    }
    tracing::info!("assent-server stopped");
    Ok(())
}

fn tls_config(config: &ServerConfig) -> Result<Option<ServerTlsConfig>, ServerError> {
    match (&config.tls_cert, &config.tls_key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => {
            let cert = std::fs::read(cert)
                .map_err(|e| ServerError::Tls(format!("{}: {e}", cert.display())))?;
            let key = std::fs::read(key)
                .map_err(|e| ServerError::Tls(format!("{}: {e}", key.display())))?;
            Ok(Some(
                ServerTlsConfig::new().identity(Identity::from_pem(cert, key)),
            ))
        }
        _ => Err(ServerError::Tls(
            "set both --tls-cert and --tls-key, or neither".to_owned(),
        )),
    }
}
