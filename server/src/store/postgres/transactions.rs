//! The transaction state machine on PostgreSQL: each change is one
//! conditional `UPDATE … RETURNING` whose event is appended by the same statement.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use super::devices::open_states;
use super::rows::{TransactionRow, transaction_columns, transactions};
use super::{PgStore, db_error, event_lock_key};
use crate::domain::push::NumberMatch;
use crate::domain::{ApplicationId, EventType, TransactionId, TransactionState, UserId};
use crate::store::{
    DeviceRecord, ExpiryGuard, NewTransaction, Scan, StoreResult, TransactionRecord,
    TransactionStore, Transition,
};

#[async_trait]
impl TransactionStore for PgStore {
    async fn insert_transaction(&self, new: &NewTransaction) -> StoreResult<TransactionRecord> {
        let row: TransactionRow = sqlx::query_as(concat!(
            "WITH l AS (SELECT pg_advisory_xact_lock($15)), t AS ( \
               INSERT INTO transactions (id, application_id, kind, state, user_id, message, \
                 context, otp_hash, created_at, expires_at, nonce, match_number, number_choices) \
               SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $12, $13, $14 \
               WHERE EXISTS (SELECT 1 FROM l) RETURNING * \
             ), e AS ( \
               INSERT INTO events (application_id, type, transaction_id, user_id, occurred_at) \
               SELECT application_id, $11, id, user_id, created_at FROM t \
             ) SELECT ",
            transaction_columns!(),
            " FROM t"
        ))
        .bind(new.id.as_uuid())
        .bind(new.application_id.as_uuid())
        .bind(new.kind.as_str())
        .bind(TransactionState::Pending.as_str())
        .bind(new.user_id.as_ref().map(|u| u.as_str()))
        .bind(new.message.as_str())
        .bind(Json(new.context.pairs()))
        .bind(new.otp_hash.as_ref().map(|h| h.as_bytes().to_vec()))
        .bind(new.created_at)
        .bind(new.expires_at)
        .bind(EventType::TransactionCreated.as_str())
        .bind(new.nonce.map(|n| n.to_vec()))
        .bind(new.number_match.as_ref().map(|m| i16::from(m.number)))
        .bind(
            new.number_match
                .as_ref()
                .map(NumberMatch::choices_text)
                .unwrap_or_default(),
        )
        .bind(event_lock_key(new.application_id))
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        row.try_into()
    }

    async fn find_transaction(
        &self,
        app: ApplicationId,
        id: TransactionId,
    ) -> StoreResult<Option<TransactionRecord>> {
        let row: Option<TransactionRow> = sqlx::query_as(concat!(
            "SELECT ",
            transaction_columns!(),
            " FROM transactions WHERE id = $1 AND application_id = $2"
        ))
        .bind(id.as_uuid())
        .bind(app.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn scan_transaction(&self, scan: &Scan) -> StoreResult<Option<TransactionRecord>> {
        let row: Option<TransactionRow> = sqlx::query_as(concat!(
            "WITH l AS (SELECT pg_advisory_xact_lock($10)), t AS ( \
               UPDATE transactions SET state = $4, device_id = $3, \
                 user_id = COALESCE(user_id, $5), nonce = $6, otp_hash = NULL \
               WHERE id = $1 AND application_id = $2 AND state = $7 AND expires_at > $8 \
                 AND (user_id IS NULL OR user_id = $5) \
                 AND EXISTS (SELECT 1 FROM devices WHERE id = $3 AND revoked_at IS NULL) \
                 AND EXISTS (SELECT 1 FROM l) \
               RETURNING * \
             ), e AS ( \
               INSERT INTO events (application_id, type, transaction_id, user_id, device_id, occurred_at) \
               SELECT application_id, $9, id, user_id, device_id, $8 FROM t \
             ) SELECT ", transaction_columns!(), " FROM t"
        ))
        .bind(scan.id.as_uuid())
        .bind(scan.application_id.as_uuid())
        .bind(scan.device_id.as_uuid())
        .bind(TransactionState::Scanned.as_str())
        .bind(&scan.user_id)
        .bind(scan.nonce.as_slice())
        .bind(TransactionState::Pending.as_str())
        .bind(scan.now)
        .bind(EventType::TransactionScanned.as_str())
        .bind(event_lock_key(scan.application_id))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn transition(&self, change: &Transition) -> StoreResult<Option<TransactionRecord>> {
        let from: Vec<&str> = change
            .to
            .entered_from()
            .iter()
            .map(|s| s.as_str())
            .collect();
        let expiry = match change.expiry {
            ExpiryGuard::Unexpired => "unexpired",
            ExpiryGuard::Expired => "expired",
            ExpiryGuard::Any => "any",
        };
        let completed_at = change.to.is_terminal().then_some(change.now);
        let row: Option<TransactionRow> = sqlx::query_as(concat!(
            "WITH l AS (SELECT pg_advisory_xact_lock($13)), t AS ( \
               UPDATE transactions SET state = $3, reason = COALESCE($4, reason), \
                 decision_signature = COALESCE($5, decision_signature), \
                 completed_at = COALESCE($6, completed_at), otp_hash = NULL, \
                 device_id = COALESCE(device_id, $8) \
               WHERE id = $1 AND application_id = $2 AND state = ANY($7) \
                 AND CASE WHEN $3 IN ('ACCEPTED', 'DENIED') THEN $8::uuid IS NOT NULL AND ( \
                       (kind = 'OTP' AND state = 'SCANNED' AND device_id = $8) \
                       OR (kind = 'PUSH' AND state = 'PENDING' AND device_id IS NULL)) \
                     ELSE $8::uuid IS NULL OR device_id = $8 END \
                 AND ($12::text IS NULL OR user_id = $12) \
                 AND EXISTS (SELECT 1 FROM l) \
                 AND CASE $9 WHEN 'unexpired' THEN expires_at > $10 \
                             WHEN 'expired' THEN expires_at <= $10 ELSE TRUE END \
               RETURNING * \
             ), e AS ( \
               INSERT INTO events (application_id, type, transaction_id, user_id, device_id, reason, \
                 fraud_reported, occurred_at) \
               SELECT application_id, $11, id, user_id, device_id, reason, \
                 (state = 'DENIED' AND reason IS NOT DISTINCT FROM 'not_me'), $10 FROM t \
             ) SELECT ", transaction_columns!(), " FROM t"
        ))
        .bind(change.id.as_uuid())
        .bind(change.application_id.as_uuid())
        .bind(change.to.as_str())
        .bind(change.reason.as_deref())
        .bind(change.signature.as_deref())
        .bind(completed_at)
        .bind(from)
        .bind(change.bound_device.map(|d| d.as_uuid()))
        .bind(expiry)
        .bind(change.now)
        .bind(change.to.event().as_str())
        .bind(change.bound_user.as_deref())
        .bind(event_lock_key(change.application_id))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn overdue_transactions(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<(ApplicationId, TransactionId)>> {
        let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
            "SELECT application_id, id FROM transactions \
             WHERE state = ANY($1) AND expires_at <= $2 ORDER BY expires_at LIMIT $3",
        )
        .bind(open_states())
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|(app, id)| (ApplicationId::from_uuid(app), TransactionId::from_uuid(id)))
            .collect())
    }

    async fn open_confirmations(
        &self,
        device: &DeviceRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<TransactionRecord>> {
        let rows: Vec<TransactionRow> = sqlx::query_as(concat!(
            "SELECT ",
            transaction_columns!(),
            " FROM transactions WHERE expires_at > $4 AND ( \
               (device_id = $1 AND state = 'SCANNED') \
               OR (kind = 'PUSH' AND state = 'PENDING' AND application_id = $2 AND user_id = $3) \
             ) ORDER BY created_at"
        ))
        .bind(device.id.as_uuid())
        .bind(device.application_id.as_uuid())
        .bind(&device.user_id)
        .bind(now)
        .fetch_all(&self.pool)
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
            " FROM transactions WHERE application_id = $1 AND user_id = $2 \
               AND kind = 'PUSH' AND state = 'PENDING'"
        ))
        .bind(app.as_uuid())
        .bind(user.as_str())
        .fetch_optional(&self.pool)
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
            "SELECT count(*) FROM transactions t WHERE t.application_id = $1 AND t.user_id = $2 \
               AND t.kind = 'PUSH' AND t.created_at > $3 \
               AND t.created_at > COALESCE((SELECT max(a.completed_at) FROM transactions a \
                 WHERE a.application_id = $1 AND a.user_id = $2 AND a.kind = 'PUSH' \
                 AND a.state = 'ACCEPTED'), '-infinity')",
        )
        .bind(app.as_uuid())
        .bind(user.as_str())
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)
    }

    async fn last_fraud_report(
        &self,
        app: ApplicationId,
        user: &UserId,
    ) -> StoreResult<Option<DateTime<Utc>>> {
        sqlx::query_scalar(
            "SELECT max(completed_at) FROM transactions WHERE application_id = $1 \
               AND user_id = $2 AND state = 'DENIED' AND reason = 'not_me'",
        )
        .bind(app.as_uuid())
        .bind(user.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)
    }
}
