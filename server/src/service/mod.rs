//! Use cases. Each takes typed input, the current time and the stores, and
//! returns records or a [`ServiceError`]; none knows about gRPC.

mod device;
mod error;
mod events;
mod lifecycle;
mod push;
mod relying_party;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use device::{DecisionInput, DecisionOutcome, EnrollInput};
pub use error::ServiceError;
pub use push::{CreatePushInput, CreatedPush};
pub use relying_party::{Caller, CreateOtpInput, CreatedOtp, DeviceView};

use crate::domain::ApiKeyId;
use crate::domain::push::PushLimits;
use crate::domain::rate::TokenBucket;
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
}

impl Default for ServiceLimits {
    fn default() -> Self {
        Self {
            create_per_second: 50.0,
            create_burst: 100,
            event_retention: Duration::from_secs(7 * 24 * 3600),
            push: PushLimits::default(),
        }
    }
}

/// The use cases of Assent over one store and one notifier.
pub struct AuthService {
    store: Arc<dyn Store>,
    notifier: Arc<Notifier>,
    metrics: Arc<Metrics>,
    limits: ServiceLimits,
    buckets: Mutex<HashMap<ApiKeyId, TokenBucket>>,
}

impl AuthService {
    /// Builds the service.
    pub fn new(store: Arc<dyn Store>, notifier: Arc<Notifier>, limits: ServiceLimits) -> Self {
        Self {
            store,
            notifier,
            metrics: Arc::default(),
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The notifier, for adapters that wait on it.
    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.notifier
    }

    /// The counters, for the metrics endpoint.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

/// Converts a `std` duration into a `chrono` one, saturating.
fn span(duration: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(duration).unwrap_or(chrono::TimeDelta::MAX)
}
