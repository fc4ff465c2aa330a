//! Row shapes as SQLite returns them, and their checked conversion into records.

use super::{optional_time, time, uuid};
use crate::domain::{ApplicationId, DeviceId, TransactionId};
use crate::store::records::StoredColumns;
use crate::store::{DeviceRecord, EventRecord, StoreError, StoreResult, TransactionRecord};

/// Columns selected for a [`TransactionRow`].
macro_rules! transaction_columns {
    () => {
        "id, application_id, kind, state, user_id, device_id, reason, message, context, \
         otp_hash, nonce, decision_signature, created_at, expires_at, completed_at, \
         match_number, number_choices"
    };
}

/// Columns selected for a [`DeviceRow`] (devices `d` joined with applications `a`).
macro_rules! device_columns {
    () => {
        "d.id, d.application_id, a.name AS application_name, d.user_id, d.name, \
         d.public_key, d.created_at, d.last_seen_at, d.revoked_at"
    };
}

pub(super) use {device_columns, transaction_columns};

#[derive(sqlx::FromRow)]
pub(super) struct TransactionRow {
    id: String,
    application_id: String,
    kind: String,
    state: String,
    user_id: Option<String>,
    device_id: Option<String>,
    reason: Option<String>,
    message: String,
    context: String,
    otp_hash: Option<Vec<u8>>,
    nonce: Option<Vec<u8>>,
    decision_signature: Option<Vec<u8>>,
    created_at: i64,
    expires_at: i64,
    completed_at: Option<i64>,
    match_number: Option<i64>,
    number_choices: String,
}

impl TryFrom<TransactionRow> for TransactionRecord {
    type Error = StoreError;

    fn try_from(row: TransactionRow) -> StoreResult<Self> {
        let columns = StoredColumns::decode(
            &row.id,
            &row.kind,
            &row.state,
            row.otp_hash.as_deref(),
            row.match_number,
            &row.number_choices,
        )?;
        Ok(Self {
            id: TransactionId::from_uuid(uuid(&row.id)?),
            application_id: ApplicationId::from_uuid(uuid(&row.application_id)?),
            kind: columns.kind,
            state: columns.state,
            user_id: row.user_id,
            device_id: row
                .device_id
                .as_deref()
                .map(uuid)
                .transpose()?
                .map(DeviceId::from_uuid),
            reason: row.reason,
            message: row.message,
            context: serde_json::from_str(&row.context)
                .map_err(|_| StoreError::Corrupt(format!("transaction {}: bad context", row.id)))?,
            otp_hash: columns.otp_hash,
            nonce: row.nonce,
            decision_signature: row.decision_signature,
            created_at: time(row.created_at)?,
            expires_at: time(row.expires_at)?,
            completed_at: optional_time(row.completed_at)?,
            match_number: columns.match_number,
            number_choices: columns.number_choices,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct DeviceRow {
    id: String,
    application_id: String,
    application_name: String,
    user_id: String,
    name: String,
    public_key: Vec<u8>,
    created_at: i64,
    last_seen_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<DeviceRow> for DeviceRecord {
    type Error = StoreError;

    fn try_from(row: DeviceRow) -> StoreResult<Self> {
        let public_key = row
            .public_key
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("device {}: bad public key", row.id)))?;
        Ok(Self {
            id: DeviceId::from_uuid(uuid(&row.id)?),
            application_id: ApplicationId::from_uuid(uuid(&row.application_id)?),
            application_name: row.application_name,
            user_id: row.user_id,
            name: row.name,
            public_key,
            created_at: time(row.created_at)?,
            last_seen_at: optional_time(row.last_seen_at)?,
            revoked_at: optional_time(row.revoked_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    cursor: i64,
    r#type: String,
    transaction_id: Option<String>,
    user_id: Option<String>,
    device_id: Option<String>,
    reason: Option<String>,
    fraud_reported: bool,
    occurred_at: i64,
}

impl TryFrom<EventRow> for EventRecord {
    type Error = StoreError;

    fn try_from(row: EventRow) -> StoreResult<Self> {
        Ok(Self {
            cursor: row.cursor,
            event_type: row.r#type,
            transaction_id: row
                .transaction_id
                .as_deref()
                .map(uuid)
                .transpose()?
                .map(TransactionId::from_uuid),
            user_id: row.user_id,
            device_id: row
                .device_id
                .as_deref()
                .map(uuid)
                .transpose()?
                .map(DeviceId::from_uuid),
            reason: row.reason,
            fraud_reported: row.fraud_reported,
            occurred_at: time(row.occurred_at)?,
        })
    }
}

/// Converts a batch of transaction rows.
pub(super) fn transactions(rows: Vec<TransactionRow>) -> StoreResult<Vec<TransactionRecord>> {
    rows.into_iter().map(TryInto::try_into).collect()
}
