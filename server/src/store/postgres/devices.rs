//! Enrollment codes, devices, revocation and OTP-failure counting on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::rows::{DeviceRow, TransactionRow, device_columns, transaction_columns, transactions};
use super::{PgStore, db_error, lock_event_log};
use crate::domain::{
    ApplicationId, DeviceId, EnrollmentId, EventType, SecretHash, TransactionState, UserId,
};
use crate::store::{
    DeviceRecord, DeviceStore, EnrollmentRecord, NewDevice, NewEnrollment, Revocation, StoreError,
    StoreResult,
};

#[async_trait]
impl DeviceStore for PgStore {
    async fn create_enrollment(&self, enrollment: &NewEnrollment) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO enrollments (id, application_id, user_id, secret_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(enrollment.id.as_uuid())
        .bind(enrollment.application_id.as_uuid())
        .bind(enrollment.user_id.as_str())
        .bind(enrollment.secret_hash.as_bytes().as_slice())
        .bind(enrollment.created_at)
        .bind(enrollment.expires_at)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn consume_enrollment(
        &self,
        id: EnrollmentId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<EnrollmentRecord>> {
        let row: Option<(Uuid, String, Vec<u8>, DateTime<Utc>)> = sqlx::query_as(
            "UPDATE enrollments SET consumed_at = $2 WHERE id = $1 AND consumed_at IS NULL \
             RETURNING application_id, user_id, secret_hash, expires_at",
        )
        .bind(id.as_uuid())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(|(app, user_id, hash, expires_at)| {
            Ok(EnrollmentRecord {
                application_id: ApplicationId::from_uuid(app),
                user_id,
                secret_hash: SecretHash::from_slice(&hash)
                    .ok_or_else(|| StoreError::Corrupt(format!("enrollment {id}: bad hash")))?,
                expires_at,
            })
        })
        .transpose()
    }

    async fn insert_device(&self, device: &NewDevice) -> StoreResult<DeviceRecord> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        lock_event_log(&mut tx, device.application_id).await?;
        let row: DeviceRow = sqlx::query_as(concat!(
            "WITH d AS ( \
               INSERT INTO devices (id, application_id, user_id, name, public_key, created_at) \
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING * \
             ), e AS ( \
               INSERT INTO events (application_id, type, user_id, device_id, occurred_at) \
               SELECT application_id, $7, user_id, id, created_at FROM d \
             ) \
             SELECT ",
            device_columns!(),
            " FROM d JOIN applications a ON a.id = d.application_id"
        ))
        .bind(device.id.as_uuid())
        .bind(device.application_id.as_uuid())
        .bind(&device.user_id)
        .bind(device.name.as_str())
        .bind(device.public_key.as_slice())
        .bind(device.created_at)
        .bind(EventType::DeviceEnrolled.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        row.try_into()
    }

    async fn find_device(&self, id: DeviceId) -> StoreResult<Option<DeviceRecord>> {
        let row: Option<DeviceRow> = sqlx::query_as(concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices d JOIN applications a ON a.id = d.application_id \
             WHERE d.id = $1"
        ))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn list_devices(
        &self,
        app: ApplicationId,
        user: Option<&UserId>,
    ) -> StoreResult<Vec<DeviceRecord>> {
        let rows: Vec<DeviceRow> = sqlx::query_as(concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices d JOIN applications a ON a.id = d.application_id \
             WHERE d.application_id = $1 AND ($2::text IS NULL OR d.user_id = $2) \
             ORDER BY d.created_at, d.id"
        ))
        .bind(app.as_uuid())
        .bind(user.map(UserId::as_str))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn touch_device(&self, id: DeviceId, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("UPDATE devices SET last_seen_at = $2 WHERE id = $1")
            .bind(id.as_uuid())
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn revoke_device(
        &self,
        app: ApplicationId,
        id: DeviceId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Revocation>> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        lock_event_log(&mut tx, app).await?;
        // Revoked once: a second revocation changes nothing and appends nothing.
        let newly_revoked: Option<(Uuid,)> = sqlx::query_as(
            "WITH d AS ( \
               UPDATE devices SET revoked_at = $3 \
               WHERE id = $1 AND application_id = $2 AND revoked_at IS NULL RETURNING * \
             ), e AS ( \
               INSERT INTO events (application_id, type, user_id, device_id, occurred_at) \
               SELECT application_id, $4, user_id, id, $3 FROM d \
             ) SELECT id FROM d",
        )
        .bind(id.as_uuid())
        .bind(app.as_uuid())
        .bind(now)
        .bind(EventType::DeviceRevoked.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let failed: Vec<TransactionRow> = if newly_revoked.is_some() {
            sqlx::query_as(concat!(
                "WITH t AS ( \
                   UPDATE transactions SET state = $3, reason = 'device_revoked', completed_at = $4 \
                   WHERE device_id = $1 AND application_id = $2 AND state = ANY($5) RETURNING * \
                 ), e AS ( \
                   INSERT INTO events (application_id, type, transaction_id, user_id, device_id, reason, occurred_at) \
                   SELECT application_id, $6, id, user_id, device_id, reason, $4 FROM t \
                 ) SELECT ", transaction_columns!(), " FROM t"
            ))
            .bind(id.as_uuid())
            .bind(app.as_uuid())
            .bind(TransactionState::Failed.as_str())
            .bind(now)
            .bind(open_states())
            .bind(EventType::TransactionFailed.as_str())
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?
        } else {
            Vec::new()
        };
        tx.commit().await.map_err(db_error)?;
        let Some(device) = self.find_device(id).await? else {
            return Ok(None);
        };
        if device.application_id != app {
            return Ok(None);
        }
        Ok(Some(Revocation {
            device,
            failed: transactions(failed)?,
        }))
    }

    async fn record_otp_failure(&self, device: DeviceId, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("INSERT INTO otp_failures (device_id, failed_at) VALUES ($1, $2)")
            .bind(device.as_uuid())
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn count_otp_failures(&self, device: DeviceId, since: DateTime<Utc>) -> StoreResult<i64> {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM otp_failures WHERE device_id = $1 AND failed_at > $2",
        )
        .bind(device.as_uuid())
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(count)
    }
}

/// The open states as bind values for `state = ANY($n)`.
pub(super) fn open_states() -> Vec<&'static str> {
    TransactionState::OPEN.iter().map(|s| s.as_str()).collect()
}
