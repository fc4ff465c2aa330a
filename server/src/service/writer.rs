//! The one write path of a transaction: read it, let the aggregate decide,
//! apply the change with its compare-and-set, count it, publish what was
//! applied.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};

use super::ServiceError;
use crate::domain::{
    ApplicationId, Change, Clock, Refusal, Transaction, TransactionId, TransactionKind,
    TransactionState,
};
use crate::metrics::{FlowStep, Metrics};
use crate::notify::Notifier;
use crate::store::Store;

/// How often a change is decided again after losing a compare-and-set. A
/// transaction changes at most three times in its life, so a fourth loss
/// means something else is wrong.
const ATTEMPTS: usize = 4;

/// OTP transactions this writer created that are remembered for their
/// scan, at most: the newest, each taken by the first scan that asks.
/// Enough for the creations of a few seconds under load; a transaction
/// forgotten (or created on another replica) is scanned the reserved way.
const RECENT_OTPS: NonZeroUsize = NonZeroUsize::MIN.saturating_add(1023);

/// Why [`TransactionWriter::update`] did not apply a change.
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

/// Applies the aggregate's changes: the only writer of transactions.
pub struct TransactionWriter {
    store: Arc<dyn Store>,
    notifier: Arc<Notifier>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// OTP transactions created here, as created (see [`RECENT_OTPS`]).
    recent_otps: Mutex<lru::LruCache<TransactionId, Transaction>>,
}

impl TransactionWriter {
    /// A writer to `store` that publishes through `notifier` and counts in `metrics`.
    pub fn new(
        store: Arc<dyn Store>,
        notifier: Arc<Notifier>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            notifier,
            clock,
            metrics,
            recent_otps: Mutex::new(lru::LruCache::new(RECENT_OTPS)),
        }
    }

    /// Takes the OTP transaction `id` of `app` as this writer created it,
    /// if it still remembers it: a copy to decide a scan on without reading
    /// it (the compare-and-set makes a stale one harmless).
    pub fn take_created_otp(&self, app: ApplicationId, id: TransactionId) -> Option<Transaction> {
        self.recent_otps()
            .pop(&id)
            .filter(|t| t.application_id == app)
    }

    fn recent_otps(&self) -> MutexGuard<'_, lru::LruCache<TransactionId, Transaction>> {
        // Every critical section leaves the map whole, and none panics.
        self.recent_otps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a change and publishes it; `false` if its compare-and-set or
    /// a guard failed (nothing was changed or published then).
    pub async fn commit(&self, change: &Change) -> Result<bool, ServiceError> {
        if !self.store.apply(change).await? {
            return Ok(false);
        }
        if change.expected.is_none() {
            self.metrics.transaction_created(change.after.kind);
            if change.after.kind == TransactionKind::Otp {
                self.recent_otps()
                    .put(change.after.id, change.after.clone());
            }
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

    /// Like [`TransactionWriter::update`], but first decides on `held`, the
    /// transaction as the caller last saw it, without reading it again: the
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

    /// Decides on `copy`, read in the same round trip as the request's own
    /// reservation (so it is fresh): a refusal is final, without reading
    /// again — every refusal of such a request costs the same work, so its
    /// timing tells nothing about why; a compare-and-set lost to a
    /// concurrent change reads again.
    pub async fn update_fresh(
        &self,
        copy: Transaction,
        now: DateTime<Utc>,
        decide: impl Fn(&Transaction) -> Result<Change, Refusal>,
    ) -> Result<Result<Transaction, NotApplied>, ServiceError> {
        let change = match decide(&copy) {
            Ok(change) => change,
            Err(refusal) => return Ok(Err(NotApplied::Refused(refusal, Box::new(copy)))),
        };
        if self.commit(&change).await? {
            return Ok(Ok(change.after));
        }
        self.update(copy.application_id, copy.id, now, decide).await
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
