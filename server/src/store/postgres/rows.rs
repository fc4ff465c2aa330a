//! Row shapes as PostgreSQL returns them, and their checked conversion into records.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use crate::domain::{ApplicationId, DeviceId, TransactionId};
use crate::store::records::StoredColumns;
use crate::store::{DeviceRecord, EventRecord, StoreError, TransactionRecord};

/// Columns selected for a [`TransactionRow`]; a macro so queries stay `&'static str`.
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
    id: Uuid,
    application_id: Uuid,
    kind: String,
    state: String,
    user_id: Option<String>,
    device_id: Option<Uuid>,
    reason: Option<String>,
    message: String,
    context: Json<BTreeMap<String, String>>,
    otp_hash: Option<Vec<u8>>,
    nonce: Option<Vec<u8>>,
    decision_signature: Option<Vec<u8>>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    match_number: Option<i16>,
    number_choices: String,
}

impl TryFrom<TransactionRow> for TransactionRecord {
    type Error = StoreError;

    fn try_from(row: TransactionRow) -> Result<Self, StoreError> {
        let columns = StoredColumns::decode(
            &row.id,
            &row.kind,
            &row.state,
            row.otp_hash.as_deref(),
            row.match_number.map(i64::from),
            &row.number_choices,
        )?;
        Ok(Self {
            id: TransactionId::from_uuid(row.id),
            application_id: ApplicationId::from_uuid(row.application_id),
            kind: columns.kind,
            state: columns.state,
            user_id: row.user_id,
            device_id: row.device_id.map(DeviceId::from_uuid),
            reason: row.reason,
            message: row.message,
            context: row.context.0,
            otp_hash: columns.otp_hash,
            nonce: row.nonce,
            decision_signature: row.decision_signature,
            created_at: row.created_at,
            expires_at: row.expires_at,
            completed_at: row.completed_at,
            match_number: columns.match_number,
            number_choices: columns.number_choices,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct DeviceRow {
    id: Uuid,
    application_id: Uuid,
    application_name: String,
    user_id: String,
    name: String,
    public_key: Vec<u8>,
    created_at: DateTime<Utc>,
    last_seen_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<DeviceRow> for DeviceRecord {
    type Error = StoreError;

    fn try_from(row: DeviceRow) -> Result<Self, StoreError> {
        let public_key = row
            .public_key
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("device {}: bad public key", row.id)))?;
        Ok(Self {
            id: DeviceId::from_uuid(row.id),
            application_id: ApplicationId::from_uuid(row.application_id),
            application_name: row.application_name,
            user_id: row.user_id,
            name: row.name,
            public_key,
            created_at: row.created_at,
            last_seen_at: row.last_seen_at,
            revoked_at: row.revoked_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    cursor: i64,
    r#type: String,
    transaction_id: Option<Uuid>,
    user_id: Option<String>,
    device_id: Option<Uuid>,
    reason: Option<String>,
    fraud_reported: bool,
    occurred_at: DateTime<Utc>,
}

impl From<EventRow> for EventRecord {
    fn from(row: EventRow) -> Self {
        Self {
            cursor: row.cursor,
            event_type: row.r#type,
            transaction_id: row.transaction_id.map(TransactionId::from_uuid),
            user_id: row.user_id,
            device_id: row.device_id.map(DeviceId::from_uuid),
            reason: row.reason,
            fraud_reported: row.fraud_reported,
            occurred_at: row.occurred_at,
        }
    }
}

/// Converts a batch of transaction rows.
pub(super) fn transactions(
    rows: Vec<TransactionRow>,
) -> Result<Vec<TransactionRecord>, StoreError> {
    rows.into_iter().map(TryInto::try_into).collect()
}
