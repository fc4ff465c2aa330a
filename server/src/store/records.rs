//! The records exchanged with storage engines.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::domain::push::NumberMatch;
use crate::domain::{
    ApiKeyId, ApplicationId, Context, DeviceId, DeviceName, EnrollmentId, Message, SecretHash,
    TransactionId, TransactionKind, TransactionState, UserId,
};

/// A relying party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    /// Its id.
    pub id: ApplicationId,
    /// Display name shown on devices.
    pub name: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A new API key's public id and secret hash.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// The key's public id.
    pub id: ApiKeyId,
    /// SHA-256 of its secret part.
    pub secret_hash: SecretHash,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A stored API key with the application it opens.
#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    /// The key's public id.
    pub id: ApiKeyId,
    /// SHA-256 of its secret part.
    pub secret_hash: SecretHash,
    /// The application.
    pub application: Application,
}

/// A new enrollment code.
#[derive(Debug, Clone)]
pub struct NewEnrollment {
    /// The code's public id.
    pub id: EnrollmentId,
    /// Its application.
    pub application_id: ApplicationId,
    /// The user it enrolls a device for.
    pub user_id: UserId,
    /// SHA-256 of the secret part.
    pub secret_hash: SecretHash,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// A consumed enrollment code.
#[derive(Debug, Clone)]
pub struct EnrollmentRecord {
    /// Its application.
    pub application_id: ApplicationId,
    /// The user.
    pub user_id: String,
    /// SHA-256 of the secret part.
    pub secret_hash: SecretHash,
    /// When it stopped working.
    pub expires_at: DateTime<Utc>,
}

/// A device about to be stored.
#[derive(Debug, Clone)]
pub struct NewDevice {
    /// Its new id.
    pub id: DeviceId,
    /// Its application.
    pub application_id: ApplicationId,
    /// Its user.
    pub user_id: String,
    /// Its display name.
    pub name: DeviceName,
    /// Ed25519 public key.
    pub public_key: [u8; 32],
    /// Enrollment time.
    pub created_at: DateTime<Utc>,
}

/// A stored device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Its id.
    pub id: DeviceId,
    /// Its application.
    pub application_id: ApplicationId,
    /// The application's display name.
    pub application_name: String,
    /// Its user.
    pub user_id: String,
    /// Its display name.
    pub name: String,
    /// Ed25519 public key.
    pub public_key: [u8; 32],
    /// Enrollment time.
    pub created_at: DateTime<Utc>,
    /// Last authenticated stream.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl DeviceRecord {
    /// Whether the device may no longer connect.
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

/// The effects of revoking a device.
#[derive(Debug, Clone)]
pub struct Revocation {
    /// The device, now revoked.
    pub device: DeviceRecord,
    /// Its confirmations that failed with `device_revoked`.
    pub failed: Vec<TransactionRecord>,
}

/// A transaction about to be stored.
#[derive(Debug, Clone)]
pub struct NewTransaction {
    /// Its id (also the OTP's public part).
    pub id: TransactionId,
    /// Its application.
    pub application_id: ApplicationId,
    /// How it reaches a device.
    pub kind: TransactionKind,
    /// Restricts it to one user's devices.
    pub user_id: Option<UserId>,
    /// The text shown.
    pub message: Message,
    /// Extra facts shown.
    pub context: Context,
    /// SHA-256 of the OTP's secret part (OTP transactions only).
    pub otp_hash: Option<SecretHash>,
    /// The confirmation nonce, set at creation for pushes (at scan for OTPs).
    pub nonce: Option<[u8; 32]>,
    /// Number matching: the number shown and the choices offered.
    pub number_match: Option<NumberMatch>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
}

/// A stored transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionRecord {
    /// Its id.
    pub id: TransactionId,
    /// Its application.
    pub application_id: ApplicationId,
    /// How it reaches a device.
    pub kind: TransactionKind,
    /// Its stored state (see [`TransactionRecord::state_at`]).
    pub state: TransactionState,
    /// The restricted or answering user.
    pub user_id: Option<String>,
    /// The bound device.
    pub device_id: Option<DeviceId>,
    /// Why it was denied or failed.
    pub reason: Option<String>,
    /// The text shown.
    pub message: String,
    /// Extra facts shown.
    pub context: BTreeMap<String, String>,
    /// SHA-256 of the OTP secret, until the OTP is used.
    pub otp_hash: Option<SecretHash>,
    /// The confirmation nonce, once scanned.
    pub nonce: Option<Vec<u8>>,
    /// The device's decision signature.
    pub decision_signature: Option<Vec<u8>>,
    /// Under number matching, the number the login page shows.
    pub match_number: Option<u8>,
    /// Under number matching, the numbers the device offers (else empty).
    pub number_choices: Vec<u8>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// When it ended.
    pub completed_at: Option<DateTime<Utc>>,
}

impl TransactionRecord {
    /// The state as a reader must see it: an open transaction past its
    /// expiry is EXPIRED even before the sweeper records it.
    pub fn state_at(&self, now: DateTime<Utc>) -> TransactionState {
        if !self.state.is_terminal() && self.expires_at <= now {
            TransactionState::Expired
        } else {
            self.state
        }
    }
}

/// PENDING → SCANNED.
#[derive(Debug, Clone)]
pub struct Scan {
    /// The transaction.
    pub id: TransactionId,
    /// The scanning device's application (tenant guard).
    pub application_id: ApplicationId,
    /// The scanning device.
    pub device_id: DeviceId,
    /// The device's user.
    pub user_id: String,
    /// Fresh confirmation nonce.
    pub nonce: [u8; 32],
    /// Now.
    pub now: DateTime<Utc>,
}

/// Which side of the expiry a transition requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryGuard {
    /// Only while `expires_at > now` (decisions, cancellations).
    Unexpired,
    /// Only once `expires_at <= now` (expiry).
    Expired,
    /// Either (revocation).
    Any,
}

/// A guarded state change.
#[derive(Debug, Clone)]
pub struct Transition {
    /// The transaction.
    pub id: TransactionId,
    /// Its application (tenant guard).
    pub application_id: ApplicationId,
    /// The target state; allowed sources come from `TransactionState::entered_from`.
    pub to: TransactionState,
    /// Reason stored with the outcome.
    pub reason: Option<String>,
    /// When set, the transaction must be bound to this device, or be a
    /// pending push that this device then claims. Required for decisions
    /// (ACCEPTED, DENIED): the store refuses a decision without a device, an
    /// OTP decision before its scan, and a push decision once claimed.
    pub bound_device: Option<DeviceId>,
    /// When set, the transaction's user must be this one.
    pub bound_user: Option<String>,
    /// The decision signature to store.
    pub signature: Option<Vec<u8>>,
    /// Expiry requirement.
    pub expiry: ExpiryGuard,
    /// Now.
    pub now: DateTime<Utc>,
}

/// One event of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Position in the log.
    pub cursor: i64,
    /// Event type name.
    pub event_type: String,
    /// The transaction, if any.
    pub transaction_id: Option<TransactionId>,
    /// The user, if known.
    pub user_id: Option<String>,
    /// The device, if any.
    pub device_id: Option<DeviceId>,
    /// Reason, for denied and failed outcomes.
    pub reason: Option<String>,
    /// A `not_me` denial: the user reports fraud.
    pub fraud_reported: bool,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
}

/// Whether an outcome in `state` with `reason` reports fraud.
pub fn is_fraud_report(state: TransactionState, reason: Option<&str>) -> bool {
    state == TransactionState::Denied && reason == Some("not_me")
}

/// The transaction columns both engines store the same way (text enums, the
/// OTP hash bytes, the number-matching columns), decoded and checked once.
pub(crate) struct StoredColumns {
    /// Parsed `kind`.
    pub kind: TransactionKind,
    /// Parsed `state`.
    pub state: TransactionState,
    /// Checked `otp_hash`.
    pub otp_hash: Option<SecretHash>,
    /// Checked `match_number`.
    pub match_number: Option<u8>,
    /// Parsed `number_choices`.
    pub number_choices: Vec<u8>,
}

impl StoredColumns {
    /// Decodes the columns of transaction `id`, naming the first bad one.
    pub(crate) fn decode(
        id: &dyn std::fmt::Display,
        kind: &str,
        state: &str,
        otp_hash: Option<&[u8]>,
        match_number: Option<i64>,
        number_choices: &str,
    ) -> Result<Self, super::StoreError> {
        let corrupt = |what: &str| super::StoreError::Corrupt(format!("transaction {id}: {what}"));
        Ok(Self {
            kind: TransactionKind::parse(kind).ok_or_else(|| corrupt("unknown kind"))?,
            state: TransactionState::parse(state).ok_or_else(|| corrupt("unknown state"))?,
            otp_hash: otp_hash
                .map(|bytes| SecretHash::from_slice(bytes).ok_or_else(|| corrupt("bad OTP hash")))
                .transpose()?,
            match_number: match_number
                .map(|n| u8::try_from(n).map_err(|_| corrupt("bad match number")))
                .transpose()?,
            number_choices: NumberMatch::parse_choices(number_choices)
                .ok_or_else(|| corrupt("bad number choices"))?,
        })
    }
}
