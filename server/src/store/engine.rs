//! What an engine is to the storage logic: its pools, its [`Queries`], and
//! the few things that truly differ between PostgreSQL and SQLite — how a
//! driver error is classified, how long readers wait for older
//! transactions to finish, and how a change is applied on its own. The
//! store traits are implemented once, for every [`Engine`], in the files
//! beside this one.

use std::future::Future;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool};

use super::driver::Driver;
use super::params::ChangeParams;
use super::queries::Queries;
use super::{StoreError, StoreResult};
use crate::domain::Change;

/// A storage engine: PostgreSQL or SQLite.
pub(crate) trait Engine: Send + Sync + 'static {
    /// Its sqlx driver.
    type Db: Driver;

    /// Pauses a reader of events takes, one after the other, while
    /// transactions older than the newest committed event may still
    /// commit; empty where one writer commits in cursor order.
    const VISIBILITY_PAUSES: &'static [Duration];

    /// Its statements.
    fn queries() -> &'static Queries;

    /// Where writes go.
    fn writer(&self) -> &Pool<Self::Db>;

    /// Where reads go.
    fn reader(&self) -> &Pool<Self::Db>;

    /// Classifies a driver error by what the caller can do about it.
    fn error(error: sqlx::Error) -> StoreError;

    /// Applies a change on its own, atomically: in one statement, or in a
    /// write transaction of [`apply_on`]'s statements.
    fn apply_alone(&self, change: &Change) -> impl Future<Output = StoreResult<bool>> + Send;
}

/// A connection of `pool`.
pub(crate) async fn connection<E: Engine>(
    pool: &Pool<E::Db>,
) -> StoreResult<PoolConnection<E::Db>> {
    pool.acquire().await.map_err(E::error)
}

/// Runs a change's statements on `conn` (inside whatever transaction it
/// is in): the write, which is the compare-and-set, then the event and the
/// strike given back where the engine appends them separately. `false` if
/// the compare-and-set or a guard failed; then nothing else ran.
pub(crate) async fn apply_on<E: Engine>(
    conn: &mut <E::Db as Database>::Connection,
    change: &Change,
) -> StoreResult<bool> {
    let q = &E::queries().dialect;
    let params = ChangeParams(change);
    let inserts = change.expected.is_none();
    let write = if inserts {
        &q.insert_transaction
    } else {
        &q.update_transaction
    };
    if write.execute(conn, params).await.map_err(E::error)? == 0 {
        return Ok(false);
    }
    if let Some(append) = &q.append_event {
        append.execute(conn, params).await.map_err(E::error)?;
    }
    Ok(true)
}
