//! Serving an opened store, in named steps: the notifier (and its relay
//! between replicas), the clock, the background upkeep, the metrics port,
//! health and reflection, then the gRPC transport until the drain ends.

use std::sync::Arc;
use std::time::Duration;

use assent_proto::v1::device_service_server::DeviceServiceServer;
use assent_proto::v1::relying_party_service_server::RelyingPartyServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;
use crate::domain::Clock;
use crate::domain::clock::DatabaseClock;
use crate::error::ServerError;
use crate::grpc::limits::MAX_MESSAGE_BYTES;
use crate::grpc::{self, DeviceHandler, RelyingPartyHandler};
use crate::notify::{self, Notifier};
use crate::service::{
    CibaNotifier, CibaService, NotifySettings, Services, WebhookDelivery, WebhookSettings,
};
use crate::startup::OpenedStore;
use crate::{metrics, sweeper};
use bounds::{connection_limits, http2_settings};

mod bounds;

/// Where the use cases read the time.
#[derive(Clone)]
pub enum TimeSource {
    /// This base clock, disciplined to the database's clock (measured at
    /// start and every [`crate::CLOCK_SYNC_EVERY`]): expiry is decided by the
    /// database's time, however far this host's clock is off.
    Database(Arc<dyn Clock>),
    /// Exactly this clock (tests move a manual one).
    Given(Arc<dyn Clock>),
}

/// Serves an already opened store (held, with its lock, until the end).
pub async fn serve(
    config: ServerConfig,
    opened: OpenedStore,
    listener: TcpListener,
    shutdown: CancellationToken,
    time: TimeSource,
) -> Result<(), ServerError> {
    serve_with_oidc(config, opened, listener, shutdown, time, None).await
}

/// [`serve`], with the OpenID CIBA provider on `oidc`'s listener and
/// issuer URL beside the gRPC port (docs/ciba.md).
pub async fn serve_with_oidc(
    config: ServerConfig,
    opened: OpenedStore,
    listener: TcpListener,
    shutdown: CancellationToken,
    time: TimeSource,
    oidc: Option<(TcpListener, String)>,
) -> Result<(), ServerError> {
    let local = listener.local_addr()?;
    let tls = grpc::tls::tls_acceptor(&config)?;
    if tls.is_none() && config.refuses_plaintext_on(local) {
        return Err(ServerError::InsecureListen(local));
    }
    if let Some((oidc_listener, _)) = &oidc {
        // The same TLS and the same plaintext guard as the gRPC port's.
        let at = oidc_listener.local_addr()?;
        if tls.is_none() && config.refuses_plaintext_on(at) {
            return Err(ServerError::InsecureListen(at));
        }
    }
    let tasks = TaskTracker::new();
    let oidc_tls = tls.as_ref().map(|(acceptor, _)| acceptor.clone());
    let tls = tls.map(|(acceptor, certificate)| {
        tasks.spawn(grpc::tls::keep_certificate_fresh(
            certificate,
            shutdown.clone(),
        ));
        acceptor
    });
    let notifier = start_notifier(&opened, &tasks, &shutdown);
    let clock = start_clock(time, &opened, &tasks, &shutdown).await;
    let services = Services::new(Arc::clone(&opened.store), notifier, clock, config.limits());
    if let Some(pool) = &opened.pool {
        services.metrics().watch_pool(pool.clone());
    }
    start_upkeep(&config, &services, &tasks, &shutdown).await;
    start_webhooks(&config, &opened, &services, &tasks, &shutdown);
    start_metrics(&config, &services, &tasks, &shutdown).await;
    let service = grpc_service(&config, &services, &tasks, &shutdown).await?;
    if let Some((oidc_listener, issuer)) = oidc {
        let ciba = Arc::new(CibaService::new(
            Arc::clone(&opened.store),
            Arc::clone(&services),
            issuer,
        ));
        // The RS256 key is made once per database, before the first request.
        ciba.signer()
            .ensure()
            .await
            .map_err(|e| ServerError::Oidc(e.to_string()))?;
        tracing::info!(address = %oidc_listener.local_addr()?, "CIBA provider listening");
        start_ciba_notifier(&config, &opened, &services, &ciba, &tasks, &shutdown);
        tasks.spawn(crate::http::serve(
            oidc_listener,
            ciba,
            oidc_tls,
            shutdown.clone(),
        ));
    }
    tracing::info!(
        address = %local,
        tls = tls.is_some(),
        mutual_tls = config.tls_client_ca.is_some(),
        "assent-server listening"
    );
    let server = grpc::transport::serve(
        listener,
        grpc::connection::Connections::new(connection_limits(&config)),
        tls,
        http2_settings(&config),
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

/// The notifier; on PostgreSQL, where several replicas may share the
/// database, with its relay to them.
fn start_notifier(
    opened: &OpenedStore,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Arc<Notifier> {
    let Some(pool) = &opened.pool else {
        return Notifier::new();
    };
    let (notifier, outbox) = Notifier::with_relay(Some(Arc::clone(&opened.store)));
    tasks.spawn(notify::postgres::run(
        pool.clone(),
        Arc::clone(&notifier),
        Arc::clone(&opened.store),
        outbox,
        shutdown.clone(),
    ));
    notifier
}

/// The clock the use cases read: the given one, or the base clock
/// disciplined to the database's (measured now and kept in step).
async fn start_clock(
    time: TimeSource,
    opened: &OpenedStore,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Arc<dyn Clock> {
    match time {
        TimeSource::Given(clock) => clock,
        TimeSource::Database(base) => {
            let clock = Arc::new(DatabaseClock::new(base));
            sweeper::sync_clock(&clock, opened.store.as_ref()).await;
            tasks.spawn(sweeper::keep_clock_synced(
                Arc::clone(&clock),
                Arc::clone(&opened.store),
                shutdown.clone(),
            ));
            clock
        }
    }
}

/// The expiry sweeper, the audit sealer, this replica's presence lease and
/// the event-signing key.
async fn start_upkeep(
    config: &ServerConfig,
    services: &Arc<Services>,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) {
    tasks.spawn(sweeper::run(
        Arc::clone(services),
        Duration::from_millis(config.sweep_interval_ms.max(10)),
        shutdown.clone(),
    ));
    tasks.spawn(sweeper::seal(Arc::clone(services), shutdown.clone()));
    // This replica's presence lease: taken now, renewed until the stop.
    if let Err(error) = services.directory.renew_presence().await {
        tracing::warn!(%error, "cannot take the presence lease yet; retrying");
    }
    tasks.spawn(sweeper::presence(Arc::clone(services), shutdown.clone()));
    // The event-signing key is made on the first start (by whichever
    // replica gets there first); a failure here is retried on first use.
    match services.signer().ensure().await {
        Ok(key_id) => tracing::info!(key_id, "event-signing key"),
        Err(error) => tracing::warn!(%error, "cannot read the event-signing key yet"),
    }
}

/// This replica's webhook delivery worker (docs/webhooks.md): it claims
/// endpoints with new events and gives its leases up at the stop.
fn start_webhooks(
    config: &ServerConfig,
    opened: &OpenedStore,
    services: &Arc<Services>,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let settings = WebhookSettings {
        allow_private: config.webhook_allow_private,
        concurrency: config.webhook_concurrency.max(1),
        request_timeout: Duration::from_millis(config.webhook_request_timeout_ms.max(1)),
        lease: Duration::from_millis(config.webhook_lease_ms.max(1_000)),
        poll: Duration::from_millis(config.webhook_poll_ms.max(10)),
    };
    let delivery = WebhookDelivery::new(
        Arc::clone(&opened.store),
        Arc::clone(services.clock()),
        Arc::clone(services.signer()),
        settings,
    );
    tasks.spawn(Arc::new(delivery).run(shutdown.clone()));
}

/// This replica's CIBA ping and push worker (docs/ciba.md): the same
/// destination rules and POST bounds as webhooks.
fn start_ciba_notifier(
    config: &ServerConfig,
    opened: &OpenedStore,
    services: &Arc<Services>,
    ciba: &Arc<CibaService>,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let settings = NotifySettings {
        allow_private: config.oidc_allow_private,
        concurrency: config.webhook_concurrency.max(1),
        request_timeout: Duration::from_millis(config.webhook_request_timeout_ms.max(1)),
        lease: Duration::from_millis(config.webhook_lease_ms.max(1_000)),
        poll: Duration::from_millis(config.webhook_poll_ms.clamp(10, 250)),
    };
    let notifier = CibaNotifier::new(
        Arc::clone(ciba),
        Arc::clone(&opened.store),
        Arc::clone(services.clock()),
        settings,
    );
    tasks.spawn(Arc::new(notifier).run(shutdown.clone()));
}

/// The Prometheus endpoint on its own port, when configured; a port that
/// cannot be bound is logged, not fatal.
async fn start_metrics(
    config: &ServerConfig,
    services: &Arc<Services>,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let Some(addr) = config.metrics_listen else {
        return;
    };
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

/// The gRPC services (health, reflection, relying party, device) behind
/// the admission bounds.
async fn grpc_service(
    config: &ServerConfig,
    services: &Arc<Services>,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<
    impl tower::Service<
        tonic::codegen::http::Request<tonic::body::Body>,
        Response = tonic::codegen::http::Response<tonic::body::Body>,
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone
    + Send
    + 'static,
    ServerError,
> {
    let health = health_service(tasks, shutdown).await;
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
        Arc::clone(services),
        tasks.clone(),
        shutdown.clone(),
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let device = DeviceServiceServer::new(DeviceHandler::new(
        Arc::clone(services),
        tasks.clone(),
        shutdown.clone(),
        Duration::from_millis(config.stream_send_timeout_ms),
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let routes = tonic::service::Routes::new(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(relying_party)
        .add_service(device)
        .prepare();
    let admission = grpc::admission::AdmissionLayer::new(
        config.max_concurrent_requests,
        Duration::from_millis(config.request_timeout_ms),
        Arc::clone(services.metrics()),
    );
    Ok(tower::ServiceBuilder::new()
        .layer(admission)
        .layer(tower::util::MapResponseLayer::new(
            grpc::limits::oversized_to_resource_exhausted::<tonic::body::Body>,
        ))
        .service(routes))
}

/// grpc.health.v1, SERVING now and NOT_SERVING as soon as the drain starts
/// (load balancers and watchers stop sending new work while in-flight calls
/// finish).
async fn health_service(
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    let (health, service) = tonic_health::server::health_reporter();
    health
        .set_serving::<RelyingPartyServiceServer<RelyingPartyHandler>>()
        .await;
    health
        .set_serving::<DeviceServiceServer<DeviceHandler>>()
        .await;
    let drain_signal = shutdown.clone();
    tasks.spawn(async move {
        drain_signal.cancelled().await;
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        health
            .set_not_serving::<RelyingPartyServiceServer<RelyingPartyHandler>>()
            .await;
        health
            .set_not_serving::<DeviceServiceServer<DeviceHandler>>()
            .await;
        tracing::info!("draining: health reports NOT_SERVING");
    });
    service
}
