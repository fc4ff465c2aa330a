//! The embedded SQLite engine: zero configuration, one process.
//!
//! One writer connection serialises every write, so events commit in cursor
//! order (no gap for `Subscribe`) and conditional updates never race inside
//! the process; a small pool of read-only connections serves reads (WAL lets
//! them run beside the writer). Other processes (`assent-server app create`)
//! may write too: the busy timeout makes them take turns.

pub(super) mod queries;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use sqlx::Sqlite;

use super::engine::{Engine, apply_on};
use super::queries::Queries;
use super::sql;
use super::{StoreError, StoreResult};
use crate::domain::Change;

/// How long a connection waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Storage in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Serialises migrations across processes (a server starting while
    /// `assent-server app create` runs); SQLite has no advisory locks.
    migration_lock: Option<PathBuf>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let mut store = Self::with_options(options).await?;
        store.migration_lock = Some(path.with_extension("db.migrate-lock"));
        Ok(store)
    }

    /// Opens `sqlite://PATH` / `sqlite:PATH` URLs.
    pub async fn open_url(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::Database)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        Self::with_options(options).await
    }

    async fn with_options(options: SqliteConnectOptions) -> StoreResult<Self> {
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(db_error)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.read_only(true))
            .await
            .map_err(db_error)?;
        Ok(Self {
            writer,
            reader,
            migration_lock: None,
        })
    }

    /// Applies the embedded migrations (`migrations/sqlite`), one process at a time.
    pub async fn migrate(&self) -> StoreResult<()> {
        let _guard = match &self.migration_lock {
            Some(path) => Some(lock_file(path).await?),
            None => None,
        };
        sqlx::migrate!("../migrations/sqlite")
            .run(&self.writer)
            .await
            .map_err(StoreError::Migrate)
    }
}

/// The SQLite statements, built once.
static QUERIES: LazyLock<Queries> = LazyLock::new(|| sql::queries(queries::dialect()));

impl Engine for SqliteStore {
    type Db = Sqlite;

    /// One writer commits events in cursor order: nothing to wait for.
    const VISIBILITY_PAUSES: &'static [Duration] = &[];

    /// The one writer connection.
    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// A change is several statements: one write transaction.
    async fn apply_alone(&self, change: &Change) -> StoreResult<bool> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        if !apply_on::<Self>(&mut tx, change).await? {
            return Ok(false);
        }
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    fn error(error: sqlx::Error) -> StoreError {
        db_error(error)
    }

    /// Read-only connections beside the writer.
    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn queries() -> &'static Queries {
        &QUERIES
    }
}

/// Takes an exclusive lock on `path`, waiting up to [`BUSY_TIMEOUT`] twice over.
async fn lock_file(path: &Path) -> StoreResult<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
    let deadline = tokio::time::Instant::now() + 2 * BUSY_TIMEOUT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Corrupt(format!(
                    "another process holds the migration lock {}",
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StoreError::Unavailable(sqlx::Error::Io(e)));
            }
        }
    }
}

/// Classifies a driver error by what the caller can do about it: a
/// statement the server got wrong is a bug; waiting, locks, I/O and a full
/// disk are `Unavailable`, and the caller may retry.
pub(super) fn db_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) => {
            let code: i32 = db.code().and_then(|c| c.parse().ok()).unwrap_or_default();
            let constraint = code & 0xff == 19;
            if code == 2067 && db.message().contains("devices.public_key") {
                StoreError::DuplicatePublicKey
            } else if code == 2067 && db.message().contains("transactions.application_id") {
                // The partial unique index allowing one pending push per user.
                StoreError::OpenPushExists
            } else if constraint || matches!(code & 0xff, 1 | 20 | 25) {
                // Constraint, SQL logic, type mismatch, range: the server's bug.
                StoreError::Database(error)
            } else {
                // Busy, locked, I/O, full, cannot open, …: transient.
                StoreError::Unavailable(error)
            }
        }
        _ => super::driver_error(error),
    }
}
