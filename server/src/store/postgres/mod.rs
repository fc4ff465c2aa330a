//! The PostgreSQL engine. Changes are applied by group commit (`batch`):
//! the changes that arrive together share one autocommitted statement —
//! per change the compare-and-set, its guards and the event append — so
//! they share its round trip, its commit and its WAL flush; no write holds
//! a lock beyond the rows it changes. Event order comes from
//! positions, not a lock: an event's position is its database transaction's id
//! and its ordinal in it, and readers take only events of transactions older
//! than every one still running — a reader that has seen position P never
//! later finds a smaller one appear (no gap for `Subscribe`), whichever
//! replica wrote it.

mod batch;
mod batch_sql;

pub(crate) use batch_sql::PLANNING;
mod queries;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgConnection, PgPool, Postgres};

use super::engine::Engine;
use super::queries::Queries;
use super::sql;
use super::{StoreError, StoreResult};
use crate::domain::Change;
use batch::GroupCommit;

/// Storage on PostgreSQL; cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    group: Arc<GroupCommit>,
}

/// How the PostgreSQL pool is bounded.
#[derive(Debug, Clone, Copy)]
pub struct PgLimits {
    /// Connections at most.
    pub max_connections: u32,
    /// How long a call waits for a connection.
    pub acquire_timeout: Duration,
    /// Longest a statement may run, lock waits included.
    pub statement_timeout: Duration,
}

impl Default for PgLimits {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(3),
        }
    }
}

impl PgStore {
    /// Connects a pool bounded by `limits`: a slow or locked database
    /// answers within the timeouts instead of holding every connection.
    pub async fn connect(url: &str, limits: PgLimits) -> StoreResult<Self> {
        let timeout = limits.statement_timeout.as_millis().to_string();
        let options: PgConnectOptions = url
            .parse::<PgConnectOptions>()
            .map_err(StoreError::Database)?
            .options([("statement_timeout", timeout.as_str())]);
        // One connection first: a pool that cannot connect only says it
        // timed out, while this says where and why.
        let target = format!(
            "{}:{} (database {:?}, user {:?})",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default(),
            options.get_username()
        );
        let probe = tokio::time::timeout(
            limits.acquire_timeout.max(Duration::from_secs(5)),
            PgConnection::connect_with(&options),
        )
        .await
        .unwrap_or_else(|_| {
            Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer within the connect timeout",
            )))
        });
        match probe {
            Ok(connection) => {
                let _ = connection.close().await;
            }
            Err(source) => return Err(StoreError::Connect { target, source }),
        }
        // Group commit's own connection counts against the bound.
        let pool_size = limits.max_connections.saturating_sub(1).max(1);
        let group = GroupCommit::new(&options, limits.acquire_timeout);
        // The pool's statements are keyed lookups whose plans do not depend
        // on the values bound: each is planned once per connection. Left to
        // choose, PostgreSQL kept re-planning the event reads on every
        // execution once the tables were analysed (a custom plan costed
        // below the generic one for a large application's log), 0.2–0.7 ms
        // of database CPU each, three reads per login.
        let pool_options = options
            .clone()
            .options([("plan_cache_mode", "force_generic_plan")]);
        let pool = PgPoolOptions::new()
            .max_connections(pool_size)
            .acquire_timeout(limits.acquire_timeout)
            // A ping per acquire is a round trip per query (≈ 13 per login,
            // BENCHMARKS.md); a broken connection fails its next query
            // instead, which maps to UNAVAILABLE.
            .test_before_acquire(false)
            .connect_with(pool_options)
            .await
            .map_err(db_error)?;
        Ok(Self { pool, group })
    }

    /// Wraps an existing pool (writes go through a connection of their own
    /// to the same database).
    pub fn from_pool(pool: PgPool) -> Self {
        let limits = PgLimits::default();
        let options = pool.connect_options();
        let group = GroupCommit::new(&options, limits.acquire_timeout);
        Self { pool, group }
    }

    /// Applies the embedded migrations (`migrations/postgres`).
    pub async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("../migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(StoreError::Migrate)
    }

    /// The pool (what the bridge between replicas publishes with).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// The PostgreSQL statements, built once.
static QUERIES: LazyLock<Queries> = LazyLock::new(|| sql::queries(queries::dialect()));

/// Pauses while waiting for older transactions to finish before reading
/// events: 1 ms, doubling, about two seconds in all (a catalog change
/// elsewhere in the cluster, such as CREATE DATABASE, can hold the horizon
/// back that long).
const HORIZON_PAUSES: [Duration; 12] = [
    Duration::from_millis(1),
    Duration::from_millis(1),
    Duration::from_millis(2),
    Duration::from_millis(4),
    Duration::from_millis(8),
    Duration::from_millis(16),
    Duration::from_millis(32),
    Duration::from_millis(64),
    Duration::from_millis(128),
    Duration::from_millis(256),
    Duration::from_millis(512),
    Duration::from_millis(1024),
];

impl Engine for PgStore {
    type Db = Postgres;

    const VISIBILITY_PAUSES: &'static [Duration] = &HORIZON_PAUSES;

    fn queries() -> &'static Queries {
        &QUERIES
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    /// The same pool.
    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn error(error: sqlx::Error) -> StoreError {
        db_error(error)
    }

    /// A change goes into the next batch (`batch`): one statement, which
    /// commits atomically with the other changes that arrived meanwhile.
    async fn apply_alone(&self, change: &Change) -> StoreResult<bool> {
        self.group.apply(change).await
    }
}

/// Classifies a driver error by what the caller can do about it: only a
/// statement the server got wrong (syntax, data, an unexpected constraint)
/// is a bug; everything about reaching or waiting for the database is
/// `Unavailable`, and the caller may retry.
fn db_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            match (code.get(..2).unwrap_or_default(), db.constraint()) {
                ("23", Some("devices_application_public_key")) => StoreError::DuplicatePublicKey,
                ("23", Some("transactions_one_open_push")) => StoreError::OpenPushExists,
                // Integrity, data and syntax errors: the server's bug.
                ("22" | "23" | "42", _) => StoreError::Database(error),
                // Connection exceptions, cancelled or timed-out statements,
                // shutdown and start-up, resources, serialization: transient.
                _ => StoreError::Unavailable(error),
            }
        }
        _ => super::driver_error(error),
    }
}
