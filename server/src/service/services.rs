//! Every use case built once, each given the collaborators it calls; the
//! adapters and upkeep reach the use cases, and the few shared parts they
//! need (clock, notifier, counters, signer), through [`Services`].

use std::sync::Arc;

use super::throttle::{ReplicaShare, SourceThrottle};
use super::{
    AuditService, ConfirmationService, CreationLimiter, DirectoryService, EnrollmentService,
    EventService, EventSigner, KeyCache, KeyService, LoginService, PushService, ServiceLimits,
    TransactionWriter, UpkeepService, reason,
};
use crate::domain::Clock;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::store::Store;

/// Every use case of Assent over one store, notifier and clock, for the
/// adapters; what upkeep and the adapters need besides is named below.
pub struct Services {
    /// API-key authentication.
    pub keys: KeyService,
    /// Enrollment codes and enrollment.
    pub enrollment: EnrollmentService,
    /// OTP logins, reading and cancelling logins.
    pub logins: LoginService,
    /// Push logins.
    pub push: PushService,
    /// A device's stream: hello, OTPs, decisions.
    pub confirmations: ConfirmationService,
    /// Devices: list, presence, revocation.
    pub directory: DirectoryService,
    /// Event streams.
    pub events: EventService,
    /// Expiry and retention.
    pub upkeep: UpkeepService,
    /// The tamper-evident record.
    pub audit: AuditService,
    clock: Arc<dyn Clock>,
    notifier: Arc<Notifier>,
    metrics: Arc<Metrics>,
    signer: Arc<EventSigner>,
}

impl Services {
    /// Builds every use case, each with the collaborators it calls.
    pub fn new(
        store: Arc<dyn Store>,
        notifier: Arc<Notifier>,
        clock: Arc<dyn Clock>,
        limits: ServiceLimits,
    ) -> Arc<Self> {
        let metrics = Arc::new(Metrics::default());
        let writer = Arc::new(TransactionWriter::new(
            Arc::clone(&store),
            Arc::clone(&notifier),
            Arc::clone(&clock),
            Arc::clone(&metrics),
        ));
        let keys = Arc::new(KeyCache::new(Arc::clone(&store), Arc::clone(&clock)));
        // Rates shared by the replicas (each allows its share).
        let share = Arc::new(ReplicaShare::new(Arc::clone(&store), Arc::clone(&clock)));
        let limiter = Arc::new(CreationLimiter::new(
            Arc::clone(&share),
            limits.create_per_second,
            limits.create_burst,
        ));
        let key_refusals = SourceThrottle::new(
            Arc::clone(&share),
            limits.api_key_refusals_per_second,
            limits.api_key_refusal_burst,
            "API keys",
            reason::API_KEY_RATE_LIMITED,
        );
        let enroll_refusals = SourceThrottle::new(
            Arc::clone(&share),
            limits.enroll_refusals_per_second,
            limits.enroll_refusal_burst,
            "enrollment attempts",
            reason::ENROLLMENT_RATE_LIMITED,
        );
        let signer = Arc::new(EventSigner::new(Arc::clone(&store), Arc::clone(&clock)));
        let replica = notifier.replica();
        Arc::new(Self {
            keys: KeyService::new(Arc::clone(&keys), key_refusals),
            enrollment: EnrollmentService::new(
                Arc::clone(&store),
                Arc::clone(&clock),
                Arc::clone(&notifier),
                Arc::clone(&metrics),
                Arc::clone(&limiter),
                enroll_refusals,
            ),
            logins: LoginService::new(
                Arc::clone(&store),
                Arc::clone(&clock),
                Arc::clone(&writer),
                Arc::clone(&limiter),
                Arc::clone(&signer),
                Arc::clone(&notifier),
                Arc::clone(&metrics),
            ),
            push: PushService::new(
                Arc::clone(&store),
                Arc::clone(&clock),
                Arc::clone(&writer),
                limiter,
                limits.push,
            ),
            confirmations: ConfirmationService::new(
                Arc::clone(&store),
                Arc::clone(&writer),
                Arc::clone(&metrics),
                share,
            ),
            directory: DirectoryService::new(
                Arc::clone(&store),
                Arc::clone(&clock),
                Arc::clone(&notifier),
                Arc::clone(&metrics),
                replica,
            ),
            events: EventService::new(
                Arc::clone(&store),
                Arc::clone(&clock),
                keys,
                Arc::clone(&signer),
                Arc::clone(&notifier),
                Arc::clone(&metrics),
                limits.max_subscribers_per_key,
            ),
            upkeep: UpkeepService::new(
                Arc::clone(&store),
                Arc::clone(&clock),
                writer,
                limits.event_retention,
            ),
            audit: AuditService::new(store, Arc::clone(&clock), Arc::clone(&signer)),
            clock,
            notifier,
            metrics,
            signer,
        })
    }

    /// The clock every use case reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The notifier, for adapters that wait on it.
    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.notifier
    }

    /// The counters, for the metrics endpoint.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The server's event signer (its key is made on the first start).
    pub fn signer(&self) -> &Arc<EventSigner> {
        &self.signer
    }
}
