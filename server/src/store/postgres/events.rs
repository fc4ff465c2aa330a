//! The event log and retention on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::rows::EventRow;
use super::{PgStore, db_error};
use crate::domain::ApplicationId;
use crate::store::{EventRecord, EventStore, StoreResult};

#[async_trait]
impl EventStore for PgStore {
    async fn events_after(
        &self,
        app: ApplicationId,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<EventRecord>> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT cursor, type, transaction_id, user_id, device_id, reason, fraud_reported, \
             occurred_at \
             FROM events WHERE application_id = $1 AND cursor > $2 ORDER BY cursor LIMIT $3",
        )
        .bind(app.as_uuid())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn purged_through(&self) -> StoreResult<i64> {
        let (cursor,): (i64,) =
            sqlx::query_as("SELECT purged_through FROM event_retention WHERE singleton")
                .fetch_one(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(cursor)
    }

    async fn purge(
        &self,
        events_before: DateTime<Utc>,
        failures_before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let (deleted, highest): (i64, Option<i64>) = sqlx::query_as(
            "WITH d AS (DELETE FROM events WHERE occurred_at < $1 RETURNING cursor) \
             SELECT count(*), max(cursor) FROM d",
        )
        .bind(events_before)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        if let Some(highest) = highest {
            sqlx::query(
                "UPDATE event_retention SET purged_through = GREATEST(purged_through, $1) \
                 WHERE singleton",
            )
            .bind(highest)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        sqlx::query("DELETE FROM otp_failures WHERE failed_at < $1")
            .bind(failures_before)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(u64::try_from(deleted).unwrap_or_default())
    }
}
