//! The transaction state machine on SQLite: each change is one conditional
//! `UPDATE … RETURNING`, with its event appended in the same write
//! transaction on the single writer connection.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::events::{NewEvent, append};
use super::rows::{TransactionRow, transaction_columns, transactions};
use super::{SqliteStore, db_error, micros, optional_time, state_list, uuid};
use crate::domain::push::NumberMatch;
use crate::domain::{ApplicationId, EventType, TransactionId, TransactionState, UserId};
use crate::store::{
    DeviceRecord, ExpiryGuard, NewTransaction, Scan, StoreResult, TransactionRecord,
    TransactionStore, Transition, is_fraud_report,
};

/// Appends the event a transition into `record.state` records.
async fn append_for(
    conn: &mut sqlx::SqliteConnection,
    record: &TransactionRecord,
    event_type: EventType,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    append(
        conn,
        NewEvent {
            application_id: record.application_id,
            event_type,
            transaction_id: Some(record.id),
            user_id: record.user_id.as_deref(),
            device_id: record.device_id,
            reason: record.reason.as_deref(),
            fraud_reported: is_fraud_report(record.state, record.reason.as_deref()),
            at,
        },
    )
    .await
}

#[async_trait]
impl TransactionStore for SqliteStore {
    async fn insert_transaction(&self, new: &NewTransaction) -> StoreResult<TransactionRecord> {
        let context = serde_json::to_string(new.context.pairs())
            .map_err(|e| crate::store::StoreError::Corrupt(format!("context: {e}")))?;
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let row: TransactionRow = sqlx::query_as(concat!(
            "INSERT INTO transactions (id, application_id, kind, state, user_id, message, \
             context, otp_hash, created_at, expires_at, nonce, match_number, number_choices) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) RETURNING ",
            transaction_columns!()
        ))
        .bind(new.id.to_string())
        .bind(new.application_id.to_string())
        .bind(new.kind.as_str())
        .bind(TransactionState::Pending.as_str())
        .bind(new.user_id.as_ref().map(|u| u.as_str()))
        .bind(new.message.as_str())
        .bind(context)
        .bind(new.otp_hash.as_ref().map(|h| h.as_bytes().to_vec()))
        .bind(micros(new.created_at))
        .bind(micros(new.expires_at))
        .bind(new.nonce.map(|n| n.to_vec()))
        .bind(new.number_match.as_ref().map(|m| i64::from(m.number)))
        .bind(
            new.number_match
                .as_ref()
                .map(NumberMatch::choices_text)
                .unwrap_or_default(),
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
        let record: TransactionRecord = row.try_into()?;
        append_for(
            &mut tx,
            &record,
            EventType::TransactionCreated,
            new.created_at,
        )
        .await?;
        tx.commit().await.map_err(db_error)?;
        Ok(record)
    }

    async fn find_transaction(
        &self,
        app: ApplicationId,
        id: TransactionId,
    ) -> StoreResult<Option<TransactionRecord>> {
        let row: Option<TransactionRow> = sqlx::query_as(concat!(
            "SELECT ",
            transaction_columns!(),
            " FROM transactions WHERE id = ?1 AND application_id = ?2"
        ))
        .bind(id.to_string())
        .bind(app.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(db_error)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn scan_transaction(&self, scan: &Scan) -> StoreResult<Option<TransactionRecord>> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let row: Option<TransactionRow> = sqlx::query_as(concat!(
            "UPDATE transactions SET state = ?4, device_id = ?3, \
               user_id = COALESCE(user_id, ?5), nonce = ?6, otp_hash = NULL \
             WHERE id = ?1 AND application_id = ?2 AND state = ?7 AND expires_at > ?8 \
               AND (user_id IS NULL OR user_id = ?5) \
               AND EXISTS (SELECT 1 FROM devices WHERE id = ?3 AND revoked_at IS NULL) \
             RETURNING ",
            transaction_columns!()
        ))
        .bind(scan.id.to_string())
        .bind(scan.application_id.to_string())
        .bind(scan.device_id.to_string())
        .bind(TransactionState::Scanned.as_str())
        .bind(&scan.user_id)
        .bind(scan.nonce.as_slice())
        .bind(TransactionState::Pending.as_str())
        .bind(micros(scan.now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let record = row.map(TransactionRecord::try_from).transpose()?;
        if let Some(record) = &record {
            append_for(&mut tx, record, EventType::TransactionScanned, scan.now).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(record)
    }

    async fn transition(&self, change: &Transition) -> StoreResult<Option<TransactionRecord>> {
        let expiry = match change.expiry {
            ExpiryGuard::Unexpired => "unexpired",
            ExpiryGuard::Expired => "expired",
            ExpiryGuard::Any => "any",
        };
        let completed_at = change.to.is_terminal().then(|| micros(change.now));
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        let row: Option<TransactionRow> = sqlx::query_as(concat!(
            "UPDATE transactions SET state = ?3, reason = COALESCE(?4, reason), \
               decision_signature = COALESCE(?5, decision_signature), \
               completed_at = COALESCE(?6, completed_at), otp_hash = NULL, \
               device_id = COALESCE(device_id, ?8) \
             WHERE id = ?1 AND application_id = ?2 \
               AND state IN (SELECT value FROM json_each(?7)) \
               AND CASE WHEN ?3 IN ('ACCEPTED', 'DENIED') THEN ?8 IS NOT NULL AND ( \
                     (kind = 'OTP' AND state = 'SCANNED' AND device_id = ?8) \
                     OR (kind = 'PUSH' AND state = 'PENDING' AND device_id IS NULL)) \
                   ELSE ?8 IS NULL OR device_id = ?8 END \
               AND (?11 IS NULL OR user_id = ?11) \
               AND CASE ?9 WHEN 'unexpired' THEN expires_at > ?10 \
                           WHEN 'expired' THEN expires_at <= ?10 ELSE 1 END \
             RETURNING ",
            transaction_columns!()
        ))
        .bind(change.id.to_string())
        .bind(change.application_id.to_string())
        .bind(change.to.as_str())
        .bind(change.reason.as_deref())
        .bind(change.signature.as_deref())
        .bind(completed_at)
        .bind(state_list(change.to.entered_from()))
        .bind(change.bound_device.map(|d| d.to_string()))
        .bind(expiry)
        .bind(micros(change.now))
        .bind(change.bound_user.as_deref())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        let record = row.map(TransactionRecord::try_from).transpose()?;
        if let Some(record) = &record {
            append_for(&mut tx, record, change.to.event(), change.now).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(record)
    }

    async fn overdue_transactions(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<(ApplicationId, TransactionId)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT application_id, id FROM transactions \
             WHERE state IN (SELECT value FROM json_each(?1)) AND expires_at <= ?2 \
             ORDER BY expires_at LIMIT ?3",
        )
        .bind(state_list(TransactionState::OPEN))
        .bind(micros(now))
        .bind(limit)
        .fetch_all(&self.reader)
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(|(app, id)| {
                Ok((
                    ApplicationId::from_uuid(uuid(&app)?),
                    TransactionId::from_uuid(uuid(&id)?),
                ))
            })
            .collect()
    }

    async fn open_confirmations(
        &self,
        device: &DeviceRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<TransactionRecord>> {
        let rows: Vec<TransactionRow> = sqlx::query_as(concat!(
            "SELECT ",
            transaction_columns!(),
            " FROM transactions WHERE expires_at > ?4 AND ( \
               (device_id = ?1 AND state = 'SCANNED') \
               OR (kind = 'PUSH' AND state = 'PENDING' AND application_id = ?2 AND user_id = ?3) \
             ) ORDER BY created_at"
        ))
        .bind(device.id.to_string())
        .bind(device.application_id.to_string())
        .bind(&device.user_id)
        .bind(micros(now))
        .fetch_all(&self.reader)
        .await
        .map_err(db_error)?;
        transactions(rows)
    }

    async fn open_push(
        &self,
        app: ApplicationId,
        user: &UserId,
    ) -> StoreResult<Option<TransactionRecord>> {
        let row: Option<TransactionRow> = sqlx::query_as(concat!(
            "SELECT ",
            transaction_columns!(),
            " FROM transactions WHERE application_id = ?1 AND user_id = ?2 \
               AND kind = 'PUSH' AND state = 'PENDING'"
        ))
        .bind(app.to_string())
        .bind(user.as_str())
        .fetch_optional(&self.reader)
        .await
        .map_err(db_error)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn count_unanswered_pushes(
        &self,
        app: ApplicationId,
        user: &UserId,
        since: DateTime<Utc>,
    ) -> StoreResult<i64> {
        sqlx::query_scalar(
            "SELECT count(*) FROM transactions t WHERE t.application_id = ?1 AND t.user_id = ?2 \
               AND t.kind = 'PUSH' AND t.created_at > ?3 \
               AND t.created_at > COALESCE((SELECT max(a.completed_at) FROM transactions a \
                 WHERE a.application_id = ?1 AND a.user_id = ?2 AND a.kind = 'PUSH' \
                 AND a.state = 'ACCEPTED'), -9223372036854775808)",
        )
        .bind(app.to_string())
        .bind(user.as_str())
        .bind(micros(since))
        .fetch_one(&self.reader)
        .await
        .map_err(db_error)
    }

    async fn last_fraud_report(
        &self,
        app: ApplicationId,
        user: &UserId,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT max(completed_at) FROM transactions WHERE application_id = ?1 \
               AND user_id = ?2 AND state = 'DENIED' AND reason = 'not_me'",
        )
        .bind(app.to_string())
        .bind(user.as_str())
        .fetch_one(&self.reader)
        .await
        .map_err(db_error)?;
        optional_time(last)
    }
}
