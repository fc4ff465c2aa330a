//! The one seam between the storage logic and sqlx: what a value must be to
//! be bound ([`Storable`]), what a row shape must be to be read
//! ([`Readable`]), and how a bound statement runs on a connection
//! ([`Driver`]). Each is said once, for both engines, so the code that uses
//! them is written once too, generic over the engine.

use futures::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{
    Arguments as _, Database, Encode, Executor, FromRow, IntoArguments, Postgres, Sqlite, Type,
};

/// A value both engines can bind as a parameter.
pub(crate) trait Storable:
    for<'q> Encode<'q, Postgres> + Type<Postgres> + for<'q> Encode<'q, Sqlite> + Type<Sqlite> + Send
{
}

impl<T> Storable for T where
    T: for<'q> Encode<'q, Postgres>
        + Type<Postgres>
        + for<'q> Encode<'q, Sqlite>
        + Type<Sqlite>
        + Send
{
}

/// A row shape both engines can decode (a `*Row` struct or a tuple).
pub(crate) trait Readable:
    for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}

impl<T> Readable for T where
    T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}

/// Where a binder puts a statement's parameters, one after the other
/// (`$1`, `$2`, …): an engine's argument buffer, or in tests a list of names.
pub(crate) trait Sink {
    /// Adds the next parameter.
    fn bind<T: Storable>(&mut self, name: &'static str, value: T);
}

/// An engine's argument buffer; the first value that fails to encode is
/// kept and reported when the statement runs.
pub(crate) struct Args<DB: Driver> {
    values: DB::Arguments,
    error: Option<BoxDynError>,
}

impl<DB: Driver> Default for Args<DB> {
    fn default() -> Self {
        Self {
            values: DB::Arguments::default(),
            error: None,
        }
    }
}

impl<DB: Driver> Sink for Args<DB> {
    fn bind<T: Storable>(&mut self, name: &'static str, value: T) {
        if self.error.is_none()
            && let Err(error) = DB::add(&mut self.values, value)
        {
            self.error = Some(format!("encoding parameter {name} failed: {error}").into());
        }
    }
}

impl<DB: Driver> Args<DB> {
    /// The bound values, or the error the first bad one gave.
    fn into_values(self) -> Result<DB::Arguments, sqlx::Error> {
        match self.error {
            Some(error) => Err(sqlx::Error::Encode(error)),
            None => Ok(self.values),
        }
    }
}

/// What the storage logic needs of an engine's sqlx driver.
pub(crate) trait Driver: Database {
    /// Appends one value to an argument buffer.
    fn add<T: Storable>(args: &mut Self::Arguments, value: T) -> Result<(), BoxDynError>;
    /// Decodes a row into a shape.
    fn read<R: Readable>(row: &Self::Row) -> Result<R, sqlx::Error>;
    /// Runs a statement; how many rows it changed.
    fn execute<'c>(
        conn: &'c mut Self::Connection,
        sql: &'static str,
        args: Args<Self>,
    ) -> BoxFuture<'c, Result<u64, sqlx::Error>>;
    /// Runs a query; every row.
    fn fetch_all<'c>(
        conn: &'c mut Self::Connection,
        sql: &'static str,
        args: Args<Self>,
    ) -> BoxFuture<'c, Result<Vec<Self::Row>, sqlx::Error>>;
}

impl Driver for Postgres {
    fn add<T: Storable>(args: &mut Self::Arguments, value: T) -> Result<(), BoxDynError> {
        args.add(value)
    }

    fn read<R: Readable>(row: &PgRow) -> Result<R, sqlx::Error> {
        R::from_row(row)
    }

    fn execute<'c>(
        conn: &'c mut Self::Connection,
        sql: &'static str,
        args: Args<Self>,
    ) -> BoxFuture<'c, Result<u64, sqlx::Error>> {
        Box::pin(async move { Ok(execute(conn, sql, args).await?.rows_affected()) })
    }

    fn fetch_all<'c>(
        conn: &'c mut Self::Connection,
        sql: &'static str,
        args: Args<Self>,
    ) -> BoxFuture<'c, Result<Vec<PgRow>, sqlx::Error>> {
        Box::pin(fetch_all(conn, sql, args))
    }
}

impl Driver for Sqlite {
    fn add<T: Storable>(args: &mut Self::Arguments, value: T) -> Result<(), BoxDynError> {
        args.add(value)
    }

    fn read<R: Readable>(row: &SqliteRow) -> Result<R, sqlx::Error> {
        R::from_row(row)
    }

    fn execute<'c>(
        conn: &'c mut Self::Connection,
        sql: &'static str,
        args: Args<Self>,
    ) -> BoxFuture<'c, Result<u64, sqlx::Error>> {
        Box::pin(async move { Ok(execute(conn, sql, args).await?.rows_affected()) })
    }

    fn fetch_all<'c>(
        conn: &'c mut Self::Connection,
        sql: &'static str,
        args: Args<Self>,
    ) -> BoxFuture<'c, Result<Vec<SqliteRow>, sqlx::Error>> {
        Box::pin(fetch_all(conn, sql, args))
    }
}

/// Runs a statement through sqlx on any engine whose connection executes.
async fn execute<DB>(
    conn: &mut DB::Connection,
    sql: &'static str,
    args: Args<DB>,
) -> Result<DB::QueryResult, sqlx::Error>
where
    DB: Driver,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    sqlx::query_with(sql, args.into_values()?)
        .execute(conn)
        .await
}

/// Runs a query through sqlx on any engine whose connection executes.
async fn fetch_all<DB>(
    conn: &mut DB::Connection,
    sql: &'static str,
    args: Args<DB>,
) -> Result<Vec<DB::Row>, sqlx::Error>
where
    DB: Driver,
    DB::Arguments: IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    sqlx::query_with(sql, args.into_values()?)
        .fetch_all(conn)
        .await
}
