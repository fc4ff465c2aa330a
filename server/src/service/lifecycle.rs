//! Expiry (lazy on read, and by the sweeper) and retention.

use chrono::{DateTime, Utc};

use super::{AuthService, ServiceError, span};
use crate::domain::ApplicationId;
use crate::domain::TransactionId;
use crate::domain::TransactionState;
use crate::domain::rate::OTP_FAILURE_WINDOW;
use crate::store::{ExpiryGuard, TransactionRecord, Transition};

/// How many overdue transactions one sweep settles at most.
const SWEEP_BATCH: i64 = 500;

impl AuthService {
    /// Records EXPIRED for one overdue transaction; `None` if it was not
    /// open-and-overdue any more (another replica or a decision got there first).
    pub(super) async fn expire(
        &self,
        app: ApplicationId,
        id: TransactionId,
        now: DateTime<Utc>,
    ) -> Result<Option<TransactionRecord>, ServiceError> {
        let expired = self
            .store
            .transition(&Transition {
                id,
                application_id: app,
                to: TransactionState::Expired,
                reason: None,
                bound_device: None,
                bound_user: None,
                signature: None,
                expiry: ExpiryGuard::Expired,
                now,
            })
            .await?;
        if let Some(record) = &expired {
            tracing::info!(transaction_id = %id, "transaction expired");
            self.after_transition(record, "expired", None).await;
        }
        Ok(expired)
    }

    /// Expires an overdue open record, or returns whatever outcome won the race.
    pub(super) async fn settle_overdue(
        &self,
        record: TransactionRecord,
        now: DateTime<Utc>,
    ) -> Result<TransactionRecord, ServiceError> {
        if let Some(expired) = self.expire(record.application_id, record.id, now).await? {
            return Ok(expired);
        }
        self.store
            .find_transaction(record.application_id, record.id)
            .await?
            .ok_or(ServiceError::NotFound("transaction"))
    }

    /// Expires every overdue open transaction (one batch); returns how many.
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<usize, ServiceError> {
        let overdue = self.store.overdue_transactions(now, SWEEP_BATCH).await?;
        let mut expired = 0;
        for (app, id) in overdue {
            if self.expire(app, id, now).await?.is_some() {
                expired += 1;
            }
        }
        Ok(expired)
    }

    /// Deletes events past retention and stale OTP-failure records.
    pub async fn purge(&self, now: DateTime<Utc>) -> Result<u64, ServiceError> {
        Ok(self
            .store
            .purge(
                now - span(self.limits.event_retention),
                now - span(OTP_FAILURE_WINDOW),
            )
            .await?)
    }
}
