//! Opening the configured store: PostgreSQL, or the embedded SQLite file
//! (its directory made owner-only, the file locked while a server serves
//! it), migrations applied.

use std::path::Path;
use std::sync::Arc;

use crate::config::{Engine, ServerConfig};
use crate::error::ServerError;
use crate::store::{PgStore, SqliteStore, Store};

/// An opened, migrated store and what it runs on.
pub struct OpenedStore {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The engine behind it.
    pub engine: Engine,
    /// The PostgreSQL pool, which also carries notifications between replicas.
    pub pool: Option<sqlx::PgPool>,
    /// Held while serving an embedded file, so a second server refuses it.
    pub(crate) _lock: Option<std::fs::File>,
}

/// Opens the configured store and applies its migrations (admin commands:
/// no single-process lock).
pub async fn open_store(config: &ServerConfig) -> Result<OpenedStore, ServerError> {
    let engine = config.engine();
    let (store, pool): (Arc<dyn Store>, _) = match &engine {
        Engine::Postgres { url } => {
            let store = PgStore::connect(url, config.pg_limits()).await?;
            store.migrate().await?;
            tracing::info!(engine = "postgres", "storage ready");
            let pool = store.pool().clone();
            (Arc::new(store), Some(pool))
        }
        Engine::Sqlite { path } => {
            prepare_dir(path)?;
            let store = SqliteStore::open(path).await?;
            store.migrate().await?;
            tracing::info!(engine = "sqlite", file = %path.display(), "storage ready");
            (Arc::new(store), None)
        }
    };
    Ok(OpenedStore {
        store,
        engine,
        pool,
        _lock: None,
    })
}

/// Creates the parent directory of the embedded database, owner-only.
pub(crate) fn prepare_dir(db: &Path) -> Result<(), ServerError> {
    let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    let error = |source| ServerError::DataDir {
        path: dir.to_owned(),
        source,
    };
    if !dir.exists() {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(error)?;
    }
    Ok(())
}

/// Opens the store for serving: an embedded file is locked for this process.
pub(crate) async fn open_for_serving(config: &ServerConfig) -> Result<OpenedStore, ServerError> {
    let lock = match config.engine() {
        Engine::Sqlite { path } => {
            prepare_dir(&path)?;
            let lock_path = path.with_extension("db.lock");
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|source| ServerError::DataDir {
                    path: lock_path.clone(),
                    source,
                })?;
            if file.try_lock().is_err() {
                return Err(ServerError::AlreadyRunning(path));
            }
            Some(file)
        }
        Engine::Postgres { .. } => None,
    };
    let mut opened = open_store(config).await?;
    opened._lock = lock;
    Ok(opened)
}
