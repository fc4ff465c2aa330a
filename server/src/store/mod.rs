//! Storage: the traits every engine implements, the records they exchange,
//! and the engines themselves.
//!
//! Every state change is one conditional statement (`UPDATE … WHERE state =
//! ANY(…) RETURNING …`) that also appends its event, so two devices, two
//! replicas or a decision racing the sweeper can never produce two outcomes.
//! Callers pass `now`; engines never read the clock.

mod postgres;
mod records;
mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use postgres::PgStore;
pub use records::*;
pub use sqlite::SqliteStore;

use crate::domain::{ApiKeyId, ApplicationId, DeviceId, EnrollmentId, TransactionId, UserId};

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The public key is already enrolled as another device.
    #[error("a device with this public key is already enrolled")]
    DuplicatePublicKey,
    /// The user already has a pending push.
    #[error("the user already has an open push")]
    OpenPushExists,
    /// The database cannot be reached or is overloaded; the call may be retried.
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A row does not satisfy the invariants its type promises.
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// Any other database failure.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// Applying migrations failed.
    #[error("applying database migrations failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// Result of a storage call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Applications and their API keys.
#[async_trait]
pub trait ApplicationStore: Send + Sync {
    /// Stores a new application with its first API key.
    async fn create_application(&self, app: &Application, key: &NewApiKey) -> StoreResult<()>;
    /// Every application, oldest first.
    async fn list_applications(&self) -> StoreResult<Vec<Application>>;
    /// The unrevoked API key with this id, with its application.
    async fn find_api_key(&self, id: ApiKeyId) -> StoreResult<Option<ApiKeyRecord>>;
}

/// Enrollment codes and devices.
#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// Stores a new enrollment code (its hash).
    async fn create_enrollment(&self, enrollment: &NewEnrollment) -> StoreResult<()>;
    /// Marks the code used and returns it, unless it was already used or
    /// never existed. Single use holds across concurrent attempts.
    async fn consume_enrollment(
        &self,
        id: EnrollmentId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<EnrollmentRecord>>;
    /// Stores a new device and appends `device.enrolled`.
    async fn insert_device(&self, device: &NewDevice) -> StoreResult<DeviceRecord>;
    /// Any device by id (the caller checks its application).
    async fn find_device(&self, id: DeviceId) -> StoreResult<Option<DeviceRecord>>;
    /// An application's devices, optionally of one user, oldest first.
    async fn list_devices(
        &self,
        app: ApplicationId,
        user: Option<&UserId>,
    ) -> StoreResult<Vec<DeviceRecord>>;
    /// Records that the device authenticated a stream.
    async fn touch_device(&self, id: DeviceId, now: DateTime<Utc>) -> StoreResult<()>;
    /// Revokes the device (idempotent), fails its open confirmations with
    /// `device_revoked`, and appends the events. `None` if the application
    /// has no such device.
    async fn revoke_device(
        &self,
        app: ApplicationId,
        id: DeviceId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Revocation>>;
    /// Records one wrong OTP from a device.
    async fn record_otp_failure(&self, device: DeviceId, now: DateTime<Utc>) -> StoreResult<()>;
    /// Wrong OTPs from a device since `since`.
    async fn count_otp_failures(&self, device: DeviceId, since: DateTime<Utc>) -> StoreResult<i64>;
}

/// Transactions and their state machine.
#[async_trait]
pub trait TransactionStore: Send + Sync {
    /// Stores a new PENDING transaction and appends `transaction.created`.
    async fn insert_transaction(&self, tx: &NewTransaction) -> StoreResult<TransactionRecord>;
    /// The application's transaction with this id.
    async fn find_transaction(
        &self,
        app: ApplicationId,
        id: TransactionId,
    ) -> StoreResult<Option<TransactionRecord>>;
    /// PENDING → SCANNED, binding the device; `None` if it was no longer
    /// pending, had expired, or is restricted to another user.
    async fn scan_transaction(&self, scan: &Scan) -> StoreResult<Option<TransactionRecord>>;
    /// Any other transition; `None` if the guard did not hold.
    async fn transition(&self, transition: &Transition) -> StoreResult<Option<TransactionRecord>>;
    /// Open transactions whose TTL has passed, at most `limit`.
    async fn overdue_transactions(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<(ApplicationId, TransactionId)>>;
    /// What the device should be asked now: its SCANNED, unexpired OTP
    /// transactions and the unexpired pending pushes to its user.
    async fn open_confirmations(
        &self,
        device: &DeviceRecord,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<TransactionRecord>>;
    /// The user's pending push, if any (expired or not).
    async fn open_push(
        &self,
        app: ApplicationId,
        user: &UserId,
    ) -> StoreResult<Option<TransactionRecord>>;
    /// Pushes to the user created after `since` and after the user's last
    /// accepted push.
    async fn count_unanswered_pushes(
        &self,
        app: ApplicationId,
        user: &UserId,
        since: DateTime<Utc>,
    ) -> StoreResult<i64>;
    /// When the user last denied a login with `not_me`.
    async fn last_fraud_report(
        &self,
        app: ApplicationId,
        user: &UserId,
    ) -> StoreResult<Option<DateTime<Utc>>>;
}

/// The event log.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// The application's events with a cursor above `after`, in cursor order.
    async fn events_after(
        &self,
        app: ApplicationId,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<EventRecord>>;
    /// The highest cursor that retention has removed (0 if none).
    async fn purged_through(&self) -> StoreResult<i64>;
    /// Deletes events and OTP-failure records older than `before`.
    async fn purge(
        &self,
        events_before: DateTime<Utc>,
        failures_before: DateTime<Utc>,
    ) -> StoreResult<u64>;
}

/// Everything the services need from storage.
pub trait Store: ApplicationStore + DeviceStore + TransactionStore + EventStore + 'static {}

impl<T: ApplicationStore + DeviceStore + TransactionStore + EventStore + 'static> Store for T {}
