//! Enrollment codes, devices, revocation and OTP-failure counting on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::events::{NewEvent, append};
use super::rows::{DeviceRow, TransactionRow, device_columns, transaction_columns, transactions};
use super::{SqliteStore, db_error, micros, state_list, time, uuid};
use crate::domain::{
    ApplicationId, DeviceId, EnrollmentId, EventType, SecretHash, TransactionState, UserId,
};
use crate::store::{
    DeviceRecord, DeviceStore, EnrollmentRecord, NewDevice, NewEnrollment, Revocation, StoreError,
    StoreResult,
};

#[async_trait]
impl DeviceStore for SqliteStore {
    async fn create_enrollment(&self, enrollment: &NewEnrollment) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO enrollments (id, application_id, user_id, secret_hash, created_at, \
             expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(enrollment.id.to_string())
        .bind(enrollment.application_id.to_string())
        .bind(enrollment.user_id.as_str())
        .bind(enrollment.secret_hash.as_bytes().as_slice())
        .bind(micros(enrollment.created_at))
        .bind(micros(enrollment.expires_at))
        .execute(&self.writer)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn consume_enrollment(
        &self,
        id: EnrollmentId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<EnrollmentRecord>> {
        let row: Option<(String, String, Vec<u8>, i64)> = sqlx::query_as(
            "UPDATE enrollments SET consumed_at = ?2 WHERE id = ?1 AND consumed_at IS NULL \
             RETURNING application_id, user_id, secret_hash, expires_at",
        )
        .bind(id.to_string())
        .bind(micros(now))
        .fetch_optional(&self.writer)
        .await
        .map_err(db_error)?;
        row.map(|(app, user_id, hash, expires_at)| {
            Ok(EnrollmentRecord {
                application_id: ApplicationId::from_uuid(uuid(&app)?),
                user_id,
                secret_hash: SecretHash::from_slice(&hash)
                    .ok_or_else(|| StoreError::Corrupt(format!("enrollment {id}: bad hash")))?,
                expires_at: time(expires_at)?,
            })
        })
        .transpose()
    }

    async fn insert_device(&self, device: &NewDevice) -> StoreResult<DeviceRecord> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        sqlx::query(
            "INSERT INTO devices (id, application_id, user_id, name, public_key, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(device.id.to_string())
        .bind(device.application_id.to_string())
        .bind(&device.user_id)
        .bind(device.name.as_str())
        .bind(device.public_key.as_slice())
        .bind(micros(device.created_at))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        append(
            &mut tx,
            NewEvent {
                application_id: device.application_id,
                event_type: EventType::DeviceEnrolled,
                transaction_id: None,
                user_id: Some(&device.user_id),
                device_id: Some(device.id),
                reason: None,
                fraud_reported: false,
                at: device.created_at,
            },
        )
        .await?;
        let row: DeviceRow = sqlx::query_as(concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices d JOIN applications a ON a.id = d.application_id WHERE d.id = ?1"
        ))
        .bind(device.id.to_string())
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
            " FROM devices d JOIN applications a ON a.id = d.application_id WHERE d.id = ?1"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.reader)
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
             WHERE d.application_id = ?1 AND (?2 IS NULL OR d.user_id = ?2) \
             ORDER BY d.created_at, d.id"
        ))
        .bind(app.to_string())
        .bind(user.map(UserId::as_str))
        .fetch_all(&self.reader)
        .await
        .map_err(db_error)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn touch_device(&self, id: DeviceId, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("UPDATE devices SET last_seen_at = ?2 WHERE id = ?1")
            .bind(id.to_string())
            .bind(micros(now))
            .execute(&self.writer)
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
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let revoked: Option<(String,)> = sqlx::query_as(
            "UPDATE devices SET revoked_at = ?3 \
             WHERE id = ?1 AND application_id = ?2 AND revoked_at IS NULL RETURNING user_id",
        )
        .bind(id.to_string())
        .bind(app.to_string())
        .bind(micros(now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let mut failed = Vec::new();
        if let Some((user_id,)) = revoked {
            append(
                &mut tx,
                NewEvent {
                    application_id: app,
                    event_type: EventType::DeviceRevoked,
                    transaction_id: None,
                    user_id: Some(&user_id),
                    device_id: Some(id),
                    reason: None,
                    fraud_reported: false,
                    at: now,
                },
            )
            .await?;
            let rows: Vec<TransactionRow> = sqlx::query_as(concat!(
                "UPDATE transactions SET state = ?3, reason = 'device_revoked', completed_at = ?4 \
                 WHERE device_id = ?1 AND application_id = ?2 \
                 AND state IN (SELECT value FROM json_each(?5)) RETURNING ",
                transaction_columns!()
            ))
            .bind(id.to_string())
            .bind(app.to_string())
            .bind(TransactionState::Failed.as_str())
            .bind(micros(now))
            .bind(state_list(TransactionState::OPEN))
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
            failed = transactions(rows)?;
            for record in &failed {
                append(
                    &mut tx,
                    NewEvent {
                        application_id: app,
                        event_type: EventType::TransactionFailed,
                        transaction_id: Some(record.id),
                        user_id: record.user_id.as_deref(),
                        device_id: record.device_id,
                        reason: record.reason.as_deref(),
                        fraud_reported: false,
                        at: now,
                    },
                )
                .await?;
            }
        }
        tx.commit().await.map_err(db_error)?;
        let Some(device) = self.find_device(id).await? else {
            return Ok(None);
        };
        if device.application_id != app {
            return Ok(None);
        }
        Ok(Some(Revocation { device, failed }))
    }

    async fn record_otp_failure(&self, device: DeviceId, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query("INSERT INTO otp_failures (device_id, failed_at) VALUES (?1, ?2)")
            .bind(device.to_string())
            .bind(micros(now))
            .execute(&self.writer)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn count_otp_failures(&self, device: DeviceId, since: DateTime<Utc>) -> StoreResult<i64> {
        sqlx::query_scalar(
            "SELECT count(*) FROM otp_failures WHERE device_id = ?1 AND failed_at > ?2",
        )
        .bind(device.to_string())
        .bind(micros(since))
        .fetch_one(&self.reader)
        .await
        .map_err(db_error)
    }
}
