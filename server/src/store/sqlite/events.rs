//! The event log and retention on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

use super::rows::EventRow;
use super::{SqliteStore, db_error, micros};
use crate::domain::{ApplicationId, DeviceId, EventType, TransactionId};
use crate::store::{EventRecord, EventStore, StoreResult};

/// One event to append inside a write transaction.
pub(super) struct NewEvent<'a> {
    pub(super) application_id: ApplicationId,
    pub(super) event_type: EventType,
    pub(super) transaction_id: Option<TransactionId>,
    pub(super) user_id: Option<&'a str>,
    pub(super) device_id: Option<DeviceId>,
    pub(super) reason: Option<&'a str>,
    pub(super) fraud_reported: bool,
    pub(super) at: DateTime<Utc>,
}

/// Appends an event on the writer connection (so it commits with its change).
pub(super) async fn append(conn: &mut SqliteConnection, event: NewEvent<'_>) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO events (application_id, type, transaction_id, user_id, device_id, reason, \
         fraud_reported, occurred_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .bind(event.application_id.to_string())
    .bind(event.event_type.as_str())
    .bind(event.transaction_id.map(|t| t.to_string()))
    .bind(event.user_id)
    .bind(event.device_id.map(|d| d.to_string()))
    .bind(event.reason)
    .bind(event.fraud_reported)
    .bind(micros(event.at))
    .execute(conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn events_after(
        &self,
        app: ApplicationId,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<EventRecord>> {
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT cursor, type, transaction_id, user_id, device_id, reason, fraud_reported, \
             occurred_at \
             FROM events WHERE application_id = ?1 AND cursor > ?2 ORDER BY cursor LIMIT ?3",
        )
        .bind(app.to_string())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.reader)
        .await
        .map_err(db_error)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn purged_through(&self) -> StoreResult<i64> {
        let (cursor,): (i64,) =
            sqlx::query_as("SELECT purged_through FROM event_retention WHERE singleton = 1")
                .fetch_one(&self.reader)
                .await
                .map_err(db_error)?;
        Ok(cursor)
    }

    async fn purge(
        &self,
        events_before: DateTime<Utc>,
        failures_before: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let highest: Option<i64> =
            sqlx::query_scalar("SELECT max(cursor) FROM events WHERE occurred_at < ?1")
                .bind(micros(events_before))
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
        let deleted = sqlx::query("DELETE FROM events WHERE occurred_at < ?1")
            .bind(micros(events_before))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?
            .rows_affected();
        if let Some(highest) = highest {
            sqlx::query(
                "UPDATE event_retention SET purged_through = max(purged_through, ?1) \
                 WHERE singleton = 1",
            )
            .bind(highest)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        sqlx::query("DELETE FROM otp_failures WHERE failed_at < ?1")
            .bind(micros(failures_before))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(deleted)
    }
}
