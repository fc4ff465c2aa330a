//! Row shapes and their conversion into domain records, shared by both
//! engines: both select the same columns under the same names. (What the
//! writes bind is in `params`.)

use std::collections::BTreeMap;

use sqlx::FromRow;
use sqlx::types::Json;

use super::codec::StoredTime;
use super::records::EventRecord;
use super::{Checkpoint, ServerKeyRecord};
use super::{StoreError, StoreResult};
use assent_proto::signing::SignedVerdict;

use crate::domain::transaction::{Reason, SignedAnswer};
use crate::domain::{
    ApplicationId, DenyReason, Device, DeviceId, EventType, SecretHash, Transaction, TransactionId,
    TransactionKind, TransactionState, UserId,
};

/// The transaction columns, in [`TransactionRow`] order.
macro_rules! transaction_columns {
    () => {
        "id, application_id, kind, state, user_id, device_id, reason, message, context, \
         otp_hash, nonce, decision_signature, match_number, number_choices, created_at, \
         expires_at, completed_at, version, binding, decision, decision_reason, picked_number"
    };
}

/// The device columns (devices `d` joined with applications `a`).
macro_rules! device_columns {
    () => {
        "d.id, d.application_id, a.name AS application_name, d.user_id, d.name, \
         d.public_key, d.created_at, d.last_seen_at, d.revoked_at"
    };
}

/// The event columns.
macro_rules! event_columns {
    () => {
        "position AS cursor, type, transaction_id, user_id, device_id, reason, fraud_reported, \
         occurred_at, binding"
    };
}

pub(super) use {device_columns, event_columns, transaction_columns};

/// The stored form of a signed verdict.
pub(crate) fn verdict_text(verdict: SignedVerdict) -> &'static str {
    match verdict {
        SignedVerdict::Accept => "accept",
        SignedVerdict::Deny => "deny",
    }
}

/// The stored form of number-matching choices (`"12,45,78"`, empty if none).
pub(crate) fn choices_text(choices: &[u8]) -> String {
    choices
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A transaction as both engines return it.
#[derive(sqlx::FromRow)]
pub(super) struct TransactionRow {
    id: TransactionId,
    application_id: ApplicationId,
    kind: TransactionKind,
    state: TransactionState,
    user_id: Option<UserId>,
    device_id: Option<DeviceId>,
    reason: Option<Reason>,
    message: String,
    context: Json<BTreeMap<String, String>>,
    otp_hash: Option<Vec<u8>>,
    nonce: Option<Vec<u8>>,
    decision_signature: Option<Vec<u8>>,
    match_number: Option<i16>,
    number_choices: String,
    created_at: StoredTime,
    expires_at: StoredTime,
    completed_at: Option<StoredTime>,
    version: i64,
    binding: Option<Vec<u8>>,
    decision: Option<String>,
    decision_reason: Option<String>,
    picked_number: Option<i16>,
}

impl TryFrom<TransactionRow> for Transaction {
    type Error = StoreError;

    fn try_from(row: TransactionRow) -> StoreResult<Self> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("transaction {}: {what}", row.id));
        let number_choices = if row.number_choices.is_empty() {
            Vec::new()
        } else {
            row.number_choices
                .split(',')
                .map(|n| n.parse().map_err(|_| corrupt("bad number choices")))
                .collect::<StoreResult<_>>()?
        };
        let answer = row
            .decision
            .as_deref()
            .map(|verdict| {
                let verdict = match verdict {
                    "accept" => SignedVerdict::Accept,
                    "deny" => SignedVerdict::Deny,
                    _ => return Err(corrupt("bad decision")),
                };
                let reason = DenyReason::parse(row.decision_reason.as_deref().unwrap_or_default())
                    .map_err(|_| corrupt("bad decision reason"))?;
                let number = row
                    .picked_number
                    .map(|n| u8::try_from(n).map_err(|_| corrupt("bad picked number")))
                    .transpose()?;
                Ok(SignedAnswer {
                    verdict,
                    reason,
                    number,
                })
            })
            .transpose()?;
        Ok(Self {
            id: row.id,
            application_id: row.application_id,
            kind: row.kind,
            state: row.state,
            user_id: row.user_id,
            device_id: row.device_id,
            reason: row.reason,
            message: row.message,
            context: row.context.0,
            otp_hash: row
                .otp_hash
                .map(|bytes| SecretHash::from_slice(&bytes).ok_or_else(|| corrupt("bad OTP hash")))
                .transpose()?,
            nonce: row
                .nonce
                .map(|bytes| <[u8; 32]>::try_from(bytes).map_err(|_| corrupt("bad nonce")))
                .transpose()?,
            decision_signature: row.decision_signature,
            match_number: row
                .match_number
                .map(|n| u8::try_from(n).map_err(|_| corrupt("bad match number")))
                .transpose()?,
            number_choices,
            created_at: row.created_at.0,
            expires_at: row.expires_at.0,
            completed_at: row.completed_at.map(|t| t.0),
            version: row.version,
            binding: row.binding,
            answer,
        })
    }
}

/// A device as both engines return it.
#[derive(sqlx::FromRow)]
pub(super) struct DeviceRow {
    id: DeviceId,
    application_id: ApplicationId,
    application_name: String,
    user_id: UserId,
    name: String,
    public_key: Vec<u8>,
    created_at: StoredTime,
    last_seen_at: Option<StoredTime>,
    revoked_at: Option<StoredTime>,
}

impl TryFrom<DeviceRow> for Device {
    type Error = StoreError;

    fn try_from(row: DeviceRow) -> StoreResult<Self> {
        let public_key = row
            .public_key
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("device {}: bad public key", row.id)))?;
        Ok(Self {
            id: row.id,
            application_id: row.application_id,
            application_name: row.application_name,
            user_id: row.user_id,
            name: row.name,
            public_key,
            created_at: row.created_at.0,
            last_seen_at: row.last_seen_at.map(|t| t.0),
            revoked_at: row.revoked_at.map(|t| t.0),
        })
    }
}

/// An event as both engines return it.
#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    cursor: i64,
    r#type: EventType,
    transaction_id: Option<TransactionId>,
    user_id: Option<UserId>,
    device_id: Option<DeviceId>,
    reason: Option<Reason>,
    fraud_reported: bool,
    occurred_at: StoredTime,
    binding: Option<Vec<u8>>,
}

/// An event with the newest committed position of its log.
#[derive(sqlx::FromRow)]
pub(super) struct HeadedEventRow {
    #[sqlx(flatten)]
    pub event: EventRow,
    pub head: i64,
}

impl EventRow {
    /// The event's position.
    pub(super) fn position(&self) -> i64 {
        self.cursor
    }
}

impl From<EventRow> for EventRecord {
    fn from(row: EventRow) -> Self {
        Self {
            cursor: row.cursor,
            event_type: row.r#type,
            transaction_id: row.transaction_id,
            user_id: row.user_id,
            device_id: row.device_id,
            reason: row.reason,
            fraud_reported: row.fraud_reported,
            occurred_at: row.occurred_at.0,
            binding: row.binding,
        }
    }
}

/// A server key as both engines return it.
#[derive(sqlx::FromRow)]
pub(super) struct ServerKeyRow {
    id: String,
    public_key: Vec<u8>,
    secret_key: Vec<u8>,
    created_at: StoredTime,
    retired_at: Option<StoredTime>,
}

impl TryFrom<ServerKeyRow> for ServerKeyRecord {
    type Error = StoreError;

    fn try_from(row: ServerKeyRow) -> StoreResult<Self> {
        let corrupt = || StoreError::Corrupt(format!("server key {}: bad key bytes", row.id));
        Ok(Self {
            public_key: row
                .public_key
                .as_slice()
                .try_into()
                .map_err(|_| corrupt())?,
            secret_key: row
                .secret_key
                .as_slice()
                .try_into()
                .map_err(|_| corrupt())?,
            id: row.id,
            created_at: row.created_at.0,
            retired_at: row.retired_at.map(|t| t.0),
        })
    }
}

/// A checkpoint as both engines return it.
#[derive(sqlx::FromRow)]
pub(super) struct CheckpointRow {
    application_id: ApplicationId,
    seq: i64,
    from_cursor: i64,
    through_cursor: i64,
    entries: Vec<u8>,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
    key_id: String,
    signature: Vec<u8>,
    created_at: StoredTime,
}

impl From<CheckpointRow> for Checkpoint {
    fn from(row: CheckpointRow) -> Self {
        Self {
            application_id: row.application_id,
            seq: row.seq,
            from_cursor: row.from_cursor,
            through_cursor: row.through_cursor,
            entries: row.entries,
            prev_hash: row.prev_hash,
            hash: row.hash,
            key_id: row.key_id,
            signature: row.signature,
            created_at: row.created_at.0,
        }
    }
}

/// What an OTP reservation that reads its transaction returns: whether a
/// strike was taken, and the transaction's columns (all null if none).
pub(super) struct ReservedRow {
    /// Whether a strike was taken.
    pub allowed: bool,
    /// The transaction looked up, if it exists.
    pub transaction: Option<TransactionRow>,
}

impl<'r, R> FromRow<'r, R> for ReservedRow
where
    R: sqlx::Row,
    &'static str: sqlx::ColumnIndex<R>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<TransactionId>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    TransactionRow: FromRow<'r, R>,
{
    fn from_row(row: &'r R) -> sqlx::Result<Self> {
        let allowed = row.try_get("allowed")?;
        let found: Option<TransactionId> = row.try_get("id")?;
        let transaction = match found {
            Some(_) => Some(TransactionRow::from_row(row)?),
            None => None,
        };
        Ok(Self {
            allowed,
            transaction,
        })
    }
}

/// Converts rows, naming the first corrupt one.
pub(super) fn convert<R, T>(rows: Vec<R>) -> StoreResult<Vec<T>>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}
