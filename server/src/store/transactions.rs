//! Transactions: the one write and the reads the use cases decide on — the
//! contract and its one implementation for every engine.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use super::codec::StoredTime;
use super::engine::{Engine, connection};
use super::rows::{TransactionRow, convert};
use crate::domain::push::UnansweredPushes;
use crate::domain::{ApplicationId, Change, Device, Transaction, TransactionId, UserId};

/// Transactions: one write, [`TransactionStore::apply`], and the reads the
/// use cases decide on.
#[async_trait]
pub trait TransactionStore: Send + Sync {
    /// Applies a change atomically with its event: inserts the new
    /// transaction, or updates it only if its stored version is still
    /// `change.expected` and the change's guards hold at commit time.
    /// `false` if the compare-and-set or a guard failed; nothing changed.
    async fn apply(&self, change: &Change) -> StoreResult<bool>;
    /// The application's transaction with this id.
    async fn find_transaction(
        &self,
        app: ApplicationId,
        id: TransactionId,
    ) -> StoreResult<Option<Transaction>>;
    /// Open transactions whose TTL has passed, oldest first, at most `limit`.
    async fn overdue_transactions(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<Transaction>>;
    /// Candidates for what the device should be asked now: open
    /// transactions bound to it and open pushes to its user. The aggregate
    /// decides which of them await its answer.
    async fn open_confirmations(&self, device: &Device) -> StoreResult<Vec<Transaction>>;
    /// The user's open push, if any (expired or not).
    async fn open_push(
        &self,
        app: ApplicationId,
        user: &UserId,
    ) -> StoreResult<Option<Transaction>>;
    /// How many of the user's pushes count as unanswered by the domain's
    /// rule `unanswered`.
    async fn count_unanswered_pushes(
        &self,
        app: ApplicationId,
        user: &UserId,
        unanswered: &UnansweredPushes,
    ) -> StoreResult<i64>;
    /// When the user's last fraud report (an event so flagged) happened.
    async fn last_fraud_report(
        &self,
        app: ApplicationId,
        user: &UserId,
    ) -> StoreResult<Option<DateTime<Utc>>>;
}

#[async_trait]
impl<E: Engine> TransactionStore for E {
    async fn apply(&self, change: &Change) -> StoreResult<bool> {
        self.apply_alone(change).await
    }

    async fn find_transaction(
        &self,
        app: ApplicationId,
        id: TransactionId,
    ) -> StoreResult<Option<Transaction>> {
        let mut conn = connection::<E>(self.reader()).await?;
        let row: Option<TransactionRow> = E::queries()
            .find_transaction
            .fetch_optional(&mut *conn, (id, app))
            .await
            .map_err(E::error)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn overdue_transactions(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<Transaction>> {
        let mut conn = connection::<E>(self.reader()).await?;
        let rows: Vec<TransactionRow> = E::queries()
            .overdue_transactions
            .fetch_all(&mut *conn, (StoredTime(now), limit))
            .await
            .map_err(E::error)?;
        convert(rows)
    }

    async fn open_confirmations(&self, device: &Device) -> StoreResult<Vec<Transaction>> {
        let mut conn = connection::<E>(self.reader()).await?;
        let params = (device.id, device.application_id, device.user_id.clone());
        let rows: Vec<TransactionRow> = E::queries()
            .open_confirmations
            .fetch_all(&mut *conn, params)
            .await
            .map_err(E::error)?;
        convert(rows)
    }

    async fn open_push(
        &self,
        app: ApplicationId,
        user: &UserId,
    ) -> StoreResult<Option<Transaction>> {
        let mut conn = connection::<E>(self.reader()).await?;
        let row: Option<TransactionRow> = E::queries()
            .open_push
            .fetch_optional(&mut *conn, (app, user.clone()))
            .await
            .map_err(E::error)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn count_unanswered_pushes(
        &self,
        app: ApplicationId,
        user: &UserId,
        unanswered: &UnansweredPushes,
    ) -> StoreResult<i64> {
        let mut conn = connection::<E>(self.reader()).await?;
        let params = (
            app,
            user.clone(),
            StoredTime(unanswered.since),
            unanswered.answered,
        );
        let (count,): (i64,) = E::queries()
            .count_unanswered_pushes
            .fetch_one(&mut *conn, params)
            .await
            .map_err(E::error)?;
        Ok(count)
    }

    async fn last_fraud_report(
        &self,
        app: ApplicationId,
        user: &UserId,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let mut conn = connection::<E>(self.reader()).await?;
        let (last,): (Option<StoredTime>,) = E::queries()
            .dialect
            .last_fraud_report
            .fetch_one(&mut *conn, (app, user.clone()))
            .await
            .map_err(E::error)?;
        Ok(last.map(|t| t.0))
    }
}
