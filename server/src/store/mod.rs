//! Storage: the traits every engine implements, the records they exchange,
//! and the engines themselves.
//!
//! The write side of transactions is [`TransactionStore::apply`]: a change
//! decided by the domain aggregate is applied as one compare-and-set on the
//! transaction's version, plus the guards that must hold at commit time
//! (the device is unrevoked, the transaction is the application's and not
//! expired), plus the event append, atomically. No business rule lives in
//! SQL beyond those guards, so two devices, two replicas or a decision
//! racing the sweeper can never produce two outcomes. Row decoding and the
//! type mapping are shared (`rows`, `codec`); the engines differ only
//! in SQL text. Callers pass `now`; engines never read the clock.

pub(crate) mod codec;
mod engine;
mod postgres;
mod records;
pub(crate) mod rows;
mod sql;
mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use postgres::{PgLimits, PgStore};
pub use records::*;
pub use sqlite::SqliteStore;

use crate::domain::{
    ApiKeyId, ApplicationId, Change, Device, DeviceId, EnrollmentId, NewDevice, Revocation,
    Transaction, TransactionId, UserId,
};

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
    /// The database named by the configuration cannot be reached at start.
    #[error(
        "cannot connect to PostgreSQL at {target}; check that it runs there and that \
         ASSENT_DATABASE_URL (database_url) names the right host, port, database and user"
    )]
    Connect {
        /// Host, port and database.
        target: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
}

/// Classifies a driver error that did not come from the database itself:
/// a row the server cannot decode is its bug; anything about reaching the
/// database (pool, I/O, protocol, TLS) is `Unavailable`.
fn driver_error(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::RowNotFound => StoreError::Database(error),
        other => StoreError::Unavailable(other),
    }
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

/// The life of API keys: added, listed, revoked (rotation = add, then revoke).
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Adds an API key to an existing application; `false` if there is no
    /// such application.
    async fn add_api_key(&self, app: ApplicationId, key: &NewApiKey) -> StoreResult<bool>;
    /// The application's keys, revoked ones included, oldest first.
    async fn list_api_keys(&self, app: ApplicationId) -> StoreResult<Vec<ApiKeyInfo>>;
    /// Revokes one of the application's keys; `false` if it has no such
    /// unrevoked key.
    async fn revoke_api_key(
        &self,
        app: ApplicationId,
        id: ApiKeyId,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
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
    /// Stores a new device and appends its `device.enrolled` event.
    async fn insert_device(&self, device: &NewDevice) -> StoreResult<Device>;
    /// Any device by id (the caller checks its application).
    async fn find_device(&self, id: DeviceId) -> StoreResult<Option<Device>>;
    /// An application's devices, optionally of one user, oldest first.
    async fn list_devices(
        &self,
        app: ApplicationId,
        user: Option<&UserId>,
    ) -> StoreResult<Vec<Device>>;
    /// Records that the device is connected; returns it as it is now
    /// (`None` if it no longer exists).
    async fn touch_device(&self, id: DeviceId, now: DateTime<Utc>) -> StoreResult<Option<Device>>;
    /// The open transactions bound to the device, whatever their expiry.
    async fn held_by(&self, device: DeviceId) -> StoreResult<Vec<Transaction>>;
    /// Applies a revocation atomically: the device is revoked (if it was
    /// not already), its `held` set is still exactly the open transactions
    /// bound to it, every failure applies, and the events are appended.
    /// `false` if any of that did not hold; nothing was changed then.
    async fn apply_revocation(&self, revocation: &Revocation) -> StoreResult<bool>;
    /// Reserves one OTP lookup of the device, atomically: allowed while its
    /// window (opened by the first strike, reopened once it began at or
    /// before `window_opened_before`) holds fewer than `limit` strikes.
    /// Once allowed, the transaction `lookup` names is read with it (in
    /// the same round trip where the engine can).
    async fn reserve_otp_attempt(
        &self,
        device: DeviceId,
        limit: i64,
        window_opened_before: DateTime<Utc>,
        now: DateTime<Utc>,
        lookup: Option<(ApplicationId, TransactionId)>,
    ) -> StoreResult<Reservation>;
}

/// What reserving an OTP lookup gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// The device has used up its strikes; nothing was reserved or read.
    CoolingOff,
    /// A strike was taken; the transaction looked up, if it exists.
    Allowed(Option<Box<Transaction>>),
}

impl Reservation {
    /// Whether a strike was taken.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed(_))
    }
}

/// Transactions: one write, [`TransactionStore::apply`], and the reads the
/// use cases decide on.
#[async_trait]
pub trait TransactionStore: Send + Sync {
    /// Applies a change atomically with its event: inserts the new
    /// transaction, or updates it only if its stored version is still
    /// `change.expected` and the change's guards hold at commit time.
    /// `false` if the compare-and-set or a guard failed; nothing changed.
    async fn apply(&self, change: &Change) -> StoreResult<bool>;
    /// The application's transaction with this id.
    async fn find_transaction(
        &self,
        app: ApplicationId,
        id: TransactionId,
    ) -> StoreResult<Option<Transaction>>;
    /// Open transactions whose TTL has passed, oldest first, at most `limit`.
    async fn overdue_transactions(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<Transaction>>;
    /// Candidates for what the device should be asked now: open
    /// transactions bound to it and open pushes to its user. The aggregate
    /// decides which of them await its answer.
    async fn open_confirmations(&self, device: &Device) -> StoreResult<Vec<Transaction>>;
    /// The user's pending push, if any (expired or not).
    async fn open_push(
        &self,
        app: ApplicationId,
        user: &UserId,
    ) -> StoreResult<Option<Transaction>>;
    /// Pushes to the user created after `since` and after the user's last
    /// accepted push.
    async fn count_unanswered_pushes(
        &self,
        app: ApplicationId,
        user: &UserId,
        since: DateTime<Utc>,
    ) -> StoreResult<i64>;
    /// When the user's last fraud report (an event so flagged) happened.
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
    /// The database's own clock, now.
    async fn database_time(&self) -> StoreResult<DateTime<Utc>>;
    /// Deletes events older than `events_before`.
    async fn purge(&self, events_before: DateTime<Utc>) -> StoreResult<u64>;
    /// Where the application's log stands now.
    async fn event_head(&self, app: ApplicationId) -> StoreResult<EventHead>;
    /// The transaction's latest event.
    async fn last_event_of(
        &self,
        app: ApplicationId,
        id: TransactionId,
    ) -> StoreResult<Option<EventRecord>>;
}

/// Where an application's event log stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHead {
    /// The highest cursor of its committed events (0 if none).
    pub newest: i64,
    /// A cursor to start "from now" at: every event not committed yet will
    /// come after it (some just committed may too).
    pub start: i64,
}

/// One of the server's event-signing keys as stored.
#[derive(Clone)]
pub struct ServerKeyRecord {
    /// Its id ([`assent_proto::signing::key_id`] of the public key).
    pub id: String,
    /// The Ed25519 public key.
    pub public_key: [u8; 32],
    /// The Ed25519 secret key (seed).
    pub secret_key: [u8; 32],
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was rotated out; `None` while current.
    pub retired_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for ServerKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKeyRecord")
            .field("id", &self.id)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// One sealed checkpoint of an application's event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The application.
    pub application_id: ApplicationId,
    /// Its place in the chain, from 1.
    pub seq: i64,
    /// The previous checkpoint's `through_cursor` (0 for the first).
    pub from_cursor: i64,
    /// The highest cursor it seals.
    pub through_cursor: i64,
    /// Every sealed event: its cursor (8 bytes, big-endian) and the
    /// SHA-256 of its signed bytes (32 bytes).
    pub entries: Vec<u8>,
    /// The previous checkpoint's hash (32 zero bytes for the first).
    pub prev_hash: Vec<u8>,
    /// SHA-256 over the checkpoint's canonical bytes.
    pub hash: Vec<u8>,
    /// The server key that signed `hash`.
    pub key_id: String,
    /// Its Ed25519 signature over `hash`.
    pub signature: Vec<u8>,
    /// When it was sealed.
    pub created_at: DateTime<Utc>,
}

/// The sealed checkpoints of the event logs.
#[async_trait]
pub trait CheckpointStore: Send + Sync {
    /// The application's newest checkpoint.
    async fn last_checkpoint(&self, app: ApplicationId) -> StoreResult<Option<Checkpoint>>;
    /// Appends a checkpoint; `false` if its `seq` was taken meanwhile (by
    /// another replica).
    async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<bool>;
    /// The application's checkpoints in chain order.
    async fn checkpoints(&self, app: ApplicationId) -> StoreResult<Vec<Checkpoint>>;
    /// Every stored event of the application with a cursor in
    /// `(after, through]`, in cursor order, as the rows are now.
    async fn stored_events(
        &self,
        app: ApplicationId,
        after: i64,
        through: i64,
    ) -> StoreResult<Vec<EventRecord>>;
}

/// Which devices hold a live stream, on any replica.
#[async_trait]
pub trait PresenceStore: Send + Sync {
    /// Extends this replica's lease until `expires_at` (created if new).
    async fn renew_replica(&self, replica: Uuid, expires_at: DateTime<Utc>) -> StoreResult<()>;
    /// Records a live stream of `device` held by `replica`.
    async fn stream_opened(
        &self,
        stream: Uuid,
        device: DeviceId,
        replica: Uuid,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Forgets a stream.
    async fn stream_closed(&self, stream: Uuid) -> StoreResult<()>;
    /// Forgets every stream of `replica` and its lease (a clean stop).
    async fn replica_stopped(&self, replica: Uuid) -> StoreResult<()>;
    /// Forgets the streams and leases of replicas whose lease ended before
    /// `before`.
    async fn forget_dead_replicas(&self, before: DateTime<Utc>) -> StoreResult<u64>;
    /// How many replicas hold a valid lease at `now` (at least the caller,
    /// once it renewed).
    async fn live_replicas(&self, now: DateTime<Utc>) -> StoreResult<i64>;
    /// The application's devices (of one user, if given) with a live
    /// stream on a replica whose lease is valid at `now`.
    async fn connected_devices(
        &self,
        app: ApplicationId,
        user: Option<&UserId>,
        now: DateTime<Utc>,
    ) -> StoreResult<std::collections::HashSet<DeviceId>>;
}

/// The server's event-signing keys, shared by every replica.
#[async_trait]
pub trait ServerKeyStore: Send + Sync {
    /// The current key, if there is one.
    async fn current_server_key(&self) -> StoreResult<Option<ServerKeyRecord>>;
    /// Makes `key` the current key: first retiring the current one when
    /// `rotate`, else only if there is none. `false` if another key is
    /// current (and `rotate` was not asked).
    async fn add_server_key(&self, key: &ServerKeyRecord, rotate: bool) -> StoreResult<bool>;
    /// Every key, newest first.
    async fn server_keys(&self) -> StoreResult<Vec<ServerKeyRecord>>;
}

/// Everything the services need from storage.
pub trait Store:
    ApplicationStore
    + ApiKeyStore
    + DeviceStore
    + TransactionStore
    + EventStore
    + ServerKeyStore
    + CheckpointStore
    + PresenceStore
    + 'static
{
}

impl<T> Store for T where
    T: ApplicationStore
        + ApiKeyStore
        + DeviceStore
        + TransactionStore
        + EventStore
        + ServerKeyStore
        + CheckpointStore
        + PresenceStore
        + 'static
{
}
