//! The PostgreSQL engine. Every applied change is one autocommitted
//! statement (the compare-and-set, its guards and the event append), and no
//! write holds a lock beyond the rows it changes, so commits of one
//! application batch in the WAL like any others. Event order comes from
//! positions instead: an event's position is its database transaction's id
//! and its ordinal in it, and readers take only events of transactions older
//! than every one still running — a reader that has seen position P never
//! later finds a smaller one appear (no gap for `Subscribe`), whichever
//! replica wrote it.

mod queries;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgConnection, PgPool};

use super::{StoreError, StoreResult};

/// Storage on PostgreSQL; cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
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
        let pool = PgPoolOptions::new()
            .max_connections(limits.max_connections)
            .acquire_timeout(limits.acquire_timeout)
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

    /// The pool (what the bridge between replicas publishes with).
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
