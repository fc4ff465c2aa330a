//! The records exchanged with storage engines besides the domain's own
//! (transactions and devices live in [`crate::domain`]).

use chrono::{DateTime, Utc};

use crate::domain::transaction::Reason;
use crate::domain::{
    ApiKeyId, ApplicationId, DeviceId, EnrollmentId, EventType, SecretHash, TransactionId, UserId,
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

/// An API key as an operator sees it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    /// The key's public id.
    pub id: ApiKeyId,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
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
    pub user_id: UserId,
    /// SHA-256 of the secret part.
    pub secret_hash: SecretHash,
    /// When it stopped working.
    pub expires_at: DateTime<Utc>,
}

/// One event of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Position in the log.
    pub cursor: i64,
    /// What happened.
    pub event_type: EventType,
    /// The transaction, if any.
    pub transaction_id: Option<TransactionId>,
    /// The user, if known.
    pub user_id: Option<UserId>,
    /// The device, if any.
    pub device_id: Option<DeviceId>,
    /// Reason, for denied and failed outcomes.
    pub reason: Option<Reason>,
    /// A `not_me` denial: the user reports fraud.
    pub fraud_reported: bool,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// The transaction's session binding, if it has one.
    pub binding: Option<Vec<u8>>,
}
