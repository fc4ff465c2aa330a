//! The creation rate of each API key (logins and enrollment codes), shared
//! by the replicas: token buckets sized by how many replicas there are.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};

use super::{Caller, Refused, RefusedExt, ServiceError, reason};
use crate::domain::rate::TokenBucket;
use crate::domain::{ApiKeyId, Clock};
use crate::store::Store;

/// Spends creation tokens of API keys.
pub struct CreationLimiter {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Sustained creations per second of one key, across the replicas.
    per_second: f64,
    /// Creations at once of one key, across the replicas.
    burst: u32,
    /// Creation tokens per API key, and the replica count they were sized for.
    buckets: Mutex<HashMap<ApiKeyId, (u32, TokenBucket)>>,
    /// Replicas sharing the database (their leases), as last counted.
    replicas: Mutex<Option<(u32, DateTime<Utc>)>>,
}

impl CreationLimiter {
    /// A limiter allowing each key `per_second` creations, `burst` at once.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, per_second: f64, burst: u32) -> Self {
        Self {
            store,
            clock,
            per_second,
            burst,
            buckets: Mutex::new(HashMap::new()),
            replicas: Mutex::new(None),
        }
    }

    /// How many replicas share the database, counted at most every second
    /// (their presence leases; 1 when it cannot be read).
    async fn replica_count(&self, now: DateTime<Utc>) -> u32 {
        {
            let cached = self.replicas.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((count, at)) = *cached
                && now - at < chrono::TimeDelta::seconds(1)
                && now >= at
            {
                return count;
            }
        }
        let count = match self.store.live_replicas(now).await {
            Ok(count) => u32::try_from(count.max(1)).unwrap_or(u32::MAX),
            Err(error) => {
                tracing::warn!(%error, "cannot count the replicas; limiting as if alone");
                1
            }
        };
        *self.replicas.lock().unwrap_or_else(PoisonError::into_inner) = Some((count, now));
        count
    }

    /// Spends one creation token of the caller's key. The key's rate and
    /// burst are shared by the replicas: each allows its share (1/N of
    /// both), so together they never exceed the configured rate by more
    /// than one burst (while the replica count changes).
    pub async fn spend(&self, caller: &Caller) -> Result<(), ServiceError> {
        let now = self.clock.now();
        let replicas = self.replica_count(now).await;
        let share = |n: u32| {
            let burst = (self.burst / n).max(1);
            TokenBucket::new(self.per_second / f64::from(n), burst, now)
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let (sized_for, bucket) = buckets
            .entry(caller.key_id)
            .or_insert_with(|| (replicas, share(replicas)));
        if *sized_for != replicas {
            *sized_for = replicas;
            *bucket = share(replicas);
        }
        bucket.take(now).map_err(|retry| {
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
