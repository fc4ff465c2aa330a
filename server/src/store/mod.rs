//! Storage: the traits every engine implements, the records they exchange,
//! and the engines themselves.
//!
//! The write side of transactions is [`TransactionStore::apply`]: a change
//! decided by the domain aggregate is applied as one compare-and-set on the
//! transaction's version, plus the guards that must hold at commit time
//! (the device is unrevoked, the transaction is the application's and not
//! expired), plus the event append, atomically. No business rule lives in
//! SQL beyond those guards, so two devices, two replicas or a decision
//! racing the sweeper can never produce two outcomes. Callers pass `now`;
//! engines never read the clock.
//!
//! Where things are: each store trait and its one implementation, generic
//! over [`engine::Engine`], in a file of its own (`applications`,
//! `devices`, `transactions`, `events`, `checkpoints`, `presence`,
//! `server_keys`); the statements an engine runs in `queries` (the
//! contract: one typed field per statement) filled in by `sql` (the text
//! both engines share) and each engine's own `queries`; what each
//! statement is bound from in `params`; rows and the type mapping in
//! `rows` and `codec`; the seam to sqlx in `driver`. An engine
//! (`postgres`, `sqlite`) is its pools, its dialect's statements and the
//! [`engine::Engine`] hooks for what truly differs.

mod applications;
#[cfg(test)]
mod arity_tests;
mod checkpoints;
mod ciba;
mod ciba_rows;
mod ciba_sql;
pub(crate) mod codec;
mod devices;
mod driver;
mod engine;
mod events;
mod params;
mod postgres;
mod presence;
mod queries;
mod records;
pub(crate) mod rows;
mod server_keys;
mod sql;
mod sqlite;
mod transactions;
mod webhook_sql;
mod webhooks;

pub use applications::{ApiKeyStore, ApplicationStore};
pub use checkpoints::{Checkpoint, CheckpointStore};
pub use ciba::{
    CibaClient, CibaNotification, CibaRequest, CibaStore, NotifyFailure, OidcKeyRecord,
};
pub use devices::{DeviceStore, OtpLookup, Reservation};
pub use events::{EventHead, EventStore};
pub(crate) use postgres::PLANNING;
pub use postgres::{PgLimits, PgStore};
pub use presence::{Interest, PresenceStore};
pub use records::*;
pub use server_keys::{ServerKeyRecord, ServerKeyStore};
pub use sqlite::SqliteStore;
pub use transactions::TransactionStore;
pub use webhooks::{DeliveryAttempt, FailedAttempt, WebhookRecord, WebhookStore};

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
    + CibaStore
    + WebhookStore
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
        + CibaStore
        + WebhookStore
        + 'static
{
}
