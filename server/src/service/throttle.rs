//! Rates shared by the replicas of one database: token buckets sized by how
//! many replicas are alive (their presence leases), so each allows its
//! share (1/N of the rate and of the burst) and together they never allow
//! more than the configured rate, whichever replica a client reaches.
//! [`ReplicaShare`] counts the replicas; [`SourceThrottle`] spends a source
//! address's allowance of refused attempts (enrollment codes, API keys).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Refused, RefusedExt, ServiceError};
use crate::domain::Clock;
use crate::domain::rate::TokenBucket;
use crate::store::Store;

/// How many replicas share the database, counted at most every second.
pub struct ReplicaShare {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    counted: Mutex<Option<(u32, DateTime<Utc>)>>,
}

impl ReplicaShare {
    /// Counts the replicas of `store`'s database.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            counted: Mutex::new(None),
        }
    }

    /// The clock the buckets read.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// That clock.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    /// The live replicas (at least 1; 1 when they cannot be counted).
    pub async fn replicas(&self, now: DateTime<Utc>) -> u32 {
        {
            let counted = self.counted.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((count, at)) = *counted
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
        *self.counted.lock().unwrap_or_else(PoisonError::into_inner) = Some((count, now));
        count
    }
}

/// Token buckets by key, each sized for the replica count it was made for
/// and resized when that changes.
pub struct SharedBuckets<K> {
    per_second: f64,
    burst: u32,
    /// Keys remembered at most; past it, full buckets are forgotten.
    capacity: usize,
    buckets: Mutex<HashMap<K, (u32, TokenBucket)>>,
}

impl<K: Eq + Hash + Clone> SharedBuckets<K> {
    /// Buckets of `per_second` and `burst` across all replicas.
    pub fn new(per_second: f64, burst: u32, capacity: usize) -> Self {
        Self {
            per_second,
            burst,
            capacity,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn share(&self, replicas: u32, now: DateTime<Utc>) -> TokenBucket {
        let burst = (self.burst / replicas).max(1);
        TokenBucket::new(self.per_second / f64::from(replicas), burst, now)
    }

    /// Takes one token of `key`'s bucket, or says how long until one is
    /// back.
    pub fn take(&self, key: &K, replicas: u32, now: DateTime<Utc>) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= self.capacity && !buckets.contains_key(key) {
            buckets.retain(|_, (_, bucket)| !bucket.is_full(now));
        }
        let (sized_for, bucket) = buckets
            .entry(key.clone())
            .or_insert_with(|| (replicas, self.share(replicas, now)));
        if *sized_for != replicas {
            *sized_for = replicas;
            *bucket = self.share(replicas, now);
        }
        bucket.take(now)
    }

    /// Whether `key` has a token left, without spending it.
    pub fn check(&self, key: &K, now: DateTime<Utc>) -> Result<(), Duration> {
        let buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        match buckets.get(key) {
            Some((_, bucket)) => bucket.clone().take(now),
            None => Ok(()),
        }
    }
}

/// Source addresses remembered at most by a throttle.
const THROTTLED_SOURCES: usize = 10_000;

/// A source address's allowance of refused attempts: looking does not
/// spend, only refusals do; once spent, every attempt from the address is
/// refused until the allowance refills.
pub struct SourceThrottle {
    share: Arc<ReplicaShare>,
    buckets: SharedBuckets<IpAddr>,
    /// What is throttled, for the refusal's text.
    what: &'static str,
    /// The refusal's machine-readable reason.
    reason: &'static str,
}

impl SourceThrottle {
    /// `burst` refused attempts at once and `per_second` regained, per
    /// source address, across the replicas.
    pub fn new(
        share: Arc<ReplicaShare>,
        per_second: f64,
        burst: u32,
        what: &'static str,
        reason: &'static str,
    ) -> Self {
        Self {
            share,
            buckets: SharedBuckets::new(per_second, burst, THROTTLED_SOURCES),
            what,
            reason,
        }
    }

    /// Refuses `source` if it has used up its allowance.
    pub fn check(&self, source: Option<IpAddr>) -> Result<(), ServiceError> {
        let Some(source) = source else { return Ok(()) };
        self.buckets
            .check(&source, self.share.now())
            .map_err(|retry| {
                ServiceError::ResourceExhausted(
                    Refused::new(
                        self.reason,
                        format!(
                            "too many refused {} from this address; retry in {} s",
                            self.what,
                            retry.as_secs().max(1)
                        ),
                    )
                    .retry_after(retry),
                )
            })
    }

    /// Spends one refused attempt of `source`.
    pub async fn refused(&self, source: Option<IpAddr>) {
        let Some(source) = source else { return };
        let now = self.share.now();
        let replicas = self.share.replicas(now).await;
        let _ = self.buckets.take(&source, replicas, now);
    }
}
