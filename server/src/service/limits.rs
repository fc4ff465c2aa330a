//! The tunables of the use cases, as the configuration sets them.

use std::time::Duration;

use crate::domain::push::PushLimits;

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
    /// Refused API keys one source address may send at once.
    pub api_key_refusal_burst: u32,
    /// Refused API keys per second one source address regains.
    pub api_key_refusals_per_second: f64,
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
            api_key_refusal_burst: 20,
            api_key_refusals_per_second: 1.0 / 3.0,
            max_subscribers_per_key: 64,
        }
    }
}
