//! Use cases, one type per use case over shared [`Deps`]: each takes typed
//! input, reads the time from the clock, lets the domain decide, applies
//! the decided change through the one write path ([`Deps::update`]), and
//! returns records or a [`ServiceError`]; none knows about gRPC.

pub mod admin;
mod audit;
mod confirmations;
mod deps;
mod directory;
mod enrollment;
mod error;
mod events;
mod feed;
mod keys;
mod logins;
mod push;
pub mod signer;
mod upkeep;

use std::sync::Arc;
use std::time::Duration;

pub use audit::{AuditReport, AuditService, Finding};
pub use confirmations::{ConfirmationService, DecisionInput, DecisionOutcome};
pub use deps::Deps;
pub use directory::{DeviceView, DirectoryService, LEASE_RENEWAL, REPLICA_LEASE};
pub use enrollment::{EnrollInput, EnrollmentService};
pub use error::{Refused, RefusedExt, ServiceError};
pub use events::{EventService, StreamSlot};
pub use keys::{Caller, KeyService};
pub use logins::{CreateOtpInput, CreatedOtp, LoginService, MAX_WAIT, TransactionView};
pub use push::{CreatePushInput, CreatedPush, PushService};
pub use signer::SignedEvent;
pub use upkeep::UpkeepService;

use crate::domain::Clock;
use crate::domain::push::PushLimits;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::store::Store;

/// Tunables of the use cases.
#[derive(Debug, Clone)]
pub struct ServiceLimits {
    /// Sustained creations per second allowed per API key.
    pub create_per_second: f64,
    /// Creations allowed at once per API key.
    pub create_burst: u32,
    /// How long events are kept.
    pub event_retention: Duration,
    /// Anti-fatigue limits of push logins.
    pub push: PushLimits,
    /// Refused enrollment attempts one peer address may make at once.
    pub enroll_refusal_burst: u32,
    /// Refused enrollment attempts per second one peer address regains.
    pub enroll_refusals_per_second: f64,
    /// Open event streams per API key (per replica).
    pub max_subscribers_per_key: usize,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        Self {
            create_per_second: 50.0,
            create_burst: 100,
            event_retention: Duration::from_secs(7 * 24 * 3600),
            push: PushLimits::default(),
            enroll_refusal_burst: 10,
            enroll_refusals_per_second: 1.0 / 6.0,
            max_subscribers_per_key: 64,
        }
    }
}

/// Every use case of Assent over one store, notifier and clock.
pub struct Services {
    /// The shared dependencies.
    pub deps: Arc<Deps>,
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
}

impl Services {
    /// Builds every use case over the same dependencies.
    pub fn new(
        store: Arc<dyn Store>,
        notifier: Arc<Notifier>,
        clock: Arc<dyn Clock>,
        limits: ServiceLimits,
    ) -> Arc<Self> {
        let deps = Arc::new(Deps::new(store, notifier, clock, limits));
        Arc::new(Self {
            keys: KeyService::new(Arc::clone(&deps)),
            enrollment: EnrollmentService::new(Arc::clone(&deps)),
            logins: LoginService::new(Arc::clone(&deps)),
            push: PushService::new(Arc::clone(&deps)),
            confirmations: ConfirmationService::new(Arc::clone(&deps)),
            directory: DirectoryService::new(Arc::clone(&deps)),
            events: EventService::new(Arc::clone(&deps)),
            upkeep: UpkeepService::new(Arc::clone(&deps)),
            audit: AuditService::new(Arc::clone(&deps)),
            deps,
        })
    }

    /// The notifier, for adapters that wait on it.
    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.deps.notifier
    }

    /// The counters, for the metrics endpoint.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.deps.metrics
    }
}
