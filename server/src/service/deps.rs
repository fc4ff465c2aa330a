//! What every use case shares — the store, the notifier, the clock, the
//! counters and the limits — and the one write path of a transaction:
//! read it, let the aggregate decide, apply the change with its
//! compare-and-set, publish what was applied.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};

use super::signer::{EventSigner, SignedEvent};
use super::{Caller, Refused, RefusedExt, ServiceError, ServiceLimits};
use crate::domain::TransactionState;
use crate::domain::rate::TokenBucket;
use crate::domain::{ApiKeyId, ApplicationId, Change, Clock, Refusal, Transaction, TransactionId};
use crate::metrics::{FlowStep, Metrics};
use crate::notify::Notifier;
use crate::store::{ApiKeyRecord, Store};

/// How often a change is decided again after losing a compare-and-set. A
/// transaction changes at most three times in its life, so a fourth loss
/// means something else is wrong.
const ATTEMPTS: usize = 4;

/// The dependencies of the use cases.
pub struct Deps {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Fan-out of applied changes.
    pub notifier: Arc<Notifier>,
    /// Where the time comes from.
    pub clock: Arc<dyn Clock>,
    /// Counters for the metrics endpoint.
    pub metrics: Arc<Metrics>,
    /// Tunables.
    pub limits: ServiceLimits,
    /// The server's event signatures.
    pub signer: EventSigner,
    /// This replica's id in the shared presence table.
    pub replica: uuid::Uuid,
    /// Creation tokens per API key, and the replica count they were sized for.
    buckets: Mutex<HashMap<ApiKeyId, (u32, TokenBucket)>>,
    /// Replicas sharing the database (their leases), as last counted.
    replicas: Mutex<Option<(u32, DateTime<Utc>)>>,
    /// API keys as last read, for at most [`KEY_CACHE_TTL`].
    keys: Mutex<HashMap<ApiKeyId, CachedKey>>,
}

/// How long a key read from the database is trusted: a revoked key stops
/// working within this time on every replica.
pub const KEY_CACHE_TTL: chrono::TimeDelta = chrono::TimeDelta::milliseconds(500);
/// Keys remembered at most; past it, the stale ones are forgotten.
const KEY_CACHE_MAX: usize = 10_000;

/// A key lookup's answer and when it was read.
struct CachedKey {
    record: Option<ApiKeyRecord>,
    read_at: DateTime<Utc>,
}

/// Why [`Deps::update`] did not apply a change.
#[derive(Debug)]
pub enum NotApplied {
    /// No such transaction in the application.
    Missing,
    /// The aggregate refused; the transaction as it was decided on.
    Refused(Refusal, Box<Transaction>),
    /// The aggregate's change lost to a commit-time guard (the device was
    /// revoked meanwhile); the transaction is unchanged.
    Guard(Box<Transaction>),
}

impl Deps {
    /// Bundles the dependencies.
    pub fn new(
        store: Arc<dyn Store>,
        notifier: Arc<Notifier>,
        clock: Arc<dyn Clock>,
        limits: ServiceLimits,
    ) -> Self {
        Self {
            store,
            notifier,
            clock,
            metrics: Arc::default(),
            limits,
            signer: EventSigner::default(),
            replica: uuid::Uuid::new_v4(),
            buckets: Mutex::new(HashMap::new()),
            replicas: Mutex::new(None),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The unrevoked API key with this id, read from the database at most
    /// `KEY_CACHE_TTL` (0.5 s) ago (one read per key and period, not per call).
    pub async fn api_key(&self, id: ApiKeyId) -> Result<Option<ApiKeyRecord>, ServiceError> {
        let now = self.clock.now();
        {
            let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(cached) = keys.get(&id)
                && now - cached.read_at < KEY_CACHE_TTL
                && now >= cached.read_at
            {
                return Ok(cached.record.clone());
            }
        }
        let record = self.store.find_api_key(id).await?;
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= KEY_CACHE_MAX {
            keys.retain(|_, cached| now - cached.read_at < KEY_CACHE_TTL);
        }
        keys.insert(
            id,
            CachedKey {
                record: record.clone(),
                read_at: now,
            },
        );
        Ok(record)
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
    pub async fn spend_creation(&self, caller: &Caller) -> Result<(), ServiceError> {
        let now = self.clock.now();
        let replicas = self.replica_count(now).await;
        let limits = &self.limits;
        let share = |n: u32| {
            let burst = (limits.create_burst / n).max(1);
            TokenBucket::new(limits.create_per_second / f64::from(n), burst, now)
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
                    "CREATION_RATE_LIMITED",
                    format!(
                        "creation rate limit of this API key reached; retry in {} ms",
                        retry.as_millis().max(1)
                    ),
                )
                .retry_after(retry),
            )
        })
    }

    /// Applies a change and publishes it; `false` if its compare-and-set or
    /// a guard failed (nothing was changed or published then).
    pub async fn commit(&self, change: &Change) -> Result<bool, ServiceError> {
        if !self.store.apply(change).await? {
            return Ok(false);
        }
        if change.expected.is_none() {
            self.metrics.transaction_created(change.after.kind);
        }
        if change.after.state.is_terminal() {
            self.metrics.transaction_ended(change.after.state);
        }
        let step = match change.after.state {
            TransactionState::Scanned => Some(FlowStep::Scanned),
            TransactionState::Accepted | TransactionState::Denied
                if change.after.answer.is_some() =>
            {
                Some(FlowStep::Decided)
            }
            _ => None,
        };
        if let Some(step) = step {
            let took = (self.clock.now() - change.after.created_at).to_std();
            self.metrics.flow_step(step, took.unwrap_or_default());
        }
        self.notifier.applied(change);
        Ok(true)
    }

    /// The transaction as it is at `now`: an overdue one is expired first,
    /// so every use case decides on a settled record.
    pub async fn settled(
        &self,
        app: ApplicationId,
        id: TransactionId,
        now: DateTime<Utc>,
    ) -> Result<Option<Transaction>, ServiceError> {
        for _ in 0..ATTEMPTS {
            let Some(current) = self.store.find_transaction(app, id).await? else {
                return Ok(None);
            };
            let Ok(expiry) = current.expire(now) else {
                return Ok(Some(current));
            };
            if self.commit(&expiry).await? {
                tracing::info!(transaction_id = %id, "transaction expired");
                return Ok(Some(expiry.after));
            }
        }
        Err(ServiceError::Contention)
    }

    /// Signs events of `app` with the server's current key.
    pub async fn sign(
        &self,
        app: ApplicationId,
        records: Vec<crate::store::EventRecord>,
    ) -> Result<Vec<SignedEvent>, ServiceError> {
        self.signer
            .sign(self.store.as_ref(), self.clock.now(), app, records)
            .await
    }

    /// The transaction's latest event, signed.
    pub async fn last_event(
        &self,
        app: ApplicationId,
        id: TransactionId,
    ) -> Result<Option<SignedEvent>, ServiceError> {
        let Some(record) = self.store.last_event_of(app, id).await? else {
            return Ok(None);
        };
        Ok(self.sign(app, vec![record]).await?.pop())
    }

    /// Like [`Deps::update`], but first decides on `held`, the transaction
    /// as the caller last saw it, without reading it again: the
    /// compare-and-set makes a stale copy harmless. Anything but a clean
    /// apply falls back to reading.
    pub async fn update_from(
        &self,
        held: Option<Transaction>,
        app: ApplicationId,
        id: TransactionId,
        now: DateTime<Utc>,
        decide: impl Fn(&Transaction) -> Result<Change, Refusal>,
    ) -> Result<Result<Transaction, NotApplied>, ServiceError> {
        let usable = held.filter(|t| t.id == id && t.application_id == app && !t.is_overdue(now));
        if let Some(current) = usable
            && let Ok(change) = decide(&current)
            && self.commit(&change).await?
        {
            return Ok(Ok(change.after));
        }
        self.update(app, id, now, decide).await
    }

    /// Reads the transaction, lets `decide` turn it into a change and
    /// applies that; decides again on the new version if another change
    /// won the compare-and-set meanwhile.
    pub async fn update(
        &self,
        app: ApplicationId,
        id: TransactionId,
        now: DateTime<Utc>,
        decide: impl Fn(&Transaction) -> Result<Change, Refusal>,
    ) -> Result<Result<Transaction, NotApplied>, ServiceError> {
        for _ in 0..ATTEMPTS {
            let Some(current) = self.settled(app, id, now).await? else {
                return Ok(Err(NotApplied::Missing));
            };
            let change = match decide(&current) {
                Ok(change) => change,
                Err(refusal) => return Ok(Err(NotApplied::Refused(refusal, Box::new(current)))),
            };
            if self.commit(&change).await? {
                return Ok(Ok(change.after));
            }
            let unchanged = self
                .store
                .find_transaction(app, id)
                .await?
                .is_some_and(|now_stored| now_stored.version == current.version);
            if unchanged {
                return Ok(Err(NotApplied::Guard(Box::new(current))));
            }
        }
        Err(ServiceError::Contention)
    }
}
