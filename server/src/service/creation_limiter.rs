//! The creation rate of each API key (logins and enrollment codes), shared
//! by the replicas: token buckets sized by how many replicas there are
//! (`throttle.rs`).

use std::sync::Arc;

use super::throttle::{ReplicaShare, SharedBuckets};
use super::{Caller, Refused, RefusedExt, ServiceError, reason};
use crate::domain::ApiKeyId;

/// API keys remembered at most; past it, full buckets are forgotten.
const KEYS: usize = 100_000;

/// Spends creation tokens of API keys.
pub struct CreationLimiter {
    share: Arc<ReplicaShare>,
    buckets: SharedBuckets<ApiKeyId>,
}

impl CreationLimiter {
    /// A limiter allowing each key `per_second` creations, `burst` at once,
    /// across the replicas `share` counts.
    pub fn new(share: Arc<ReplicaShare>, per_second: f64, burst: u32) -> Self {
        Self {
            share,
            buckets: SharedBuckets::new(per_second, burst, KEYS),
        }
    }

    /// Spends one creation token of the caller's key. The key's rate and
    /// burst are shared by the replicas: each allows its share (1/N of
    /// both), so together they never exceed the configured rate by more
    /// than one burst (while the replica count changes).
    pub async fn spend(&self, caller: &Caller) -> Result<(), ServiceError> {
        let now = self.share.now();
        let replicas = self.share.replicas(now).await;
        self.buckets
            .take(&caller.key_id, replicas, now)
            .map_err(|retry| {
                ServiceError::ResourceExhausted(
                    Refused::new(
                        reason::CREATION_RATE_LIMITED,
                        format!(
                            "creation rate limit of this API key reached; retry in {} ms",
                            retry.as_millis().max(1)
                        ),
                    )
                    .retry_after(retry),
                )
            })
    }
}
