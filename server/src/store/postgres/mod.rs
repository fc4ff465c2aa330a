//! The PostgreSQL engine. Event order: every write that appends an event
//! takes a per-application transaction-scoped advisory lock first, so events
//! of one application commit in cursor order and a reader that has seen
//! cursor N can never later find a smaller one appear (no gap for `Subscribe`).
//!
//! Every applied change is one autocommitted statement: a `WITH l AS
//! (SELECT pg_advisory_xact_lock(…))` CTE that the compare-and-set
//! `UPDATE`/`INSERT` references in its `WHERE`, so the lock is taken before
//! any row changes and held until the statement's implicit transaction
//! commits — one round trip instead of four.

mod queries;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::{StoreError, StoreResult};

/// Storage on PostgreSQL; cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects a pool of at most `max_connections`.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let options: PgConnectOptions = url.parse().map_err(StoreError::Database)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            // A ping per acquire is a round trip per query (≈ 13 per login,
            // BENCHMARKS.md); a broken connection fails its next query
            // instead, which maps to UNAVAILABLE.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(db_error)?;
        Ok(Self { pool })
    }

    /// Wraps an existing pool.
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Applies the embedded migrations (`migrations/postgres`).
    pub async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("../migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(StoreError::Migrate)
    }

    /// The pool, for cross-replica notification.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Where writes go.
    fn writer(&self) -> &PgPool {
        &self.pool
    }

    /// Where reads go (the same pool).
    fn reader(&self) -> &PgPool {
        &self.pool
    }
}

super::engine::sql_engine!(super::PgStore, sqlx::Postgres, super::queries);

/// Classifies a driver error by what the caller can do about it.
fn db_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(error)
        }
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if code == "23505" && db.constraint() == Some("devices_application_public_key") {
                StoreError::DuplicatePublicKey
            } else if code == "23505" && db.constraint() == Some("transactions_one_open_push") {
                StoreError::OpenPushExists
            } else if code.starts_with("08") || code == "57P01" || code == "53300" {
                // Connection exceptions, admin shutdown, too many connections.
                StoreError::Unavailable(error)
            } else {
                StoreError::Database(error)
            }
        }
        _ => StoreError::Database(error),
    }
}
