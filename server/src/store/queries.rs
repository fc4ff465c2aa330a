//! The storage contract each engine fills in: a [`Queries`] value with one
//! field per statement, each a [`Statement`] typed by the parameters its
//! binder binds. Statements whose text is the same on both engines are
//! written once (`store::sql`); [`DialectQueries`] holds the ones that
//! differ, with `None` where an engine has no such step.

use std::marker::PhantomData;

use super::codec::{StoredTime, StoredUuid};
use super::driver::{Args, Driver, Readable};
use super::params::{Bind, ChangeShape, Shape, StrikeAndLookupShape};
use crate::domain::{
    ApiKeyId, ApplicationId, DeviceId, EnrollmentId, EventType, TransactionId, TransactionState,
    UserId,
};

/// One SQL statement and the parameters it is bound from.
pub(crate) struct Statement<P> {
    sql: String,
    params: PhantomData<fn(P)>,
}

impl<P: Shape> Statement<P> {
    /// A statement with this text.
    pub(crate) fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            params: PhantomData,
        }
    }

    /// Its text.
    #[cfg(test)]
    pub(crate) fn sql(&self) -> &str {
        &self.sql
    }

    fn args<DB: Driver>(params: P::Of<'_>) -> Args<DB> {
        let mut args = Args::default();
        params.bind(&mut args);
        args
    }

    /// Runs it on `conn`; how many rows it changed.
    pub(crate) async fn execute<C>(
        &'static self,
        conn: &mut C,
        params: P::Of<'_>,
    ) -> sqlx::Result<u64>
    where
        C: sqlx::Connection,
        C::Database: Driver<Connection = C>,
    {
        <C::Database as Driver>::execute(conn, &self.sql, Self::args(params)).await
    }

    /// Runs it on `conn`; every row it returns.
    pub(crate) async fn fetch_all<C, R>(
        &'static self,
        conn: &mut C,
        params: P::Of<'_>,
    ) -> sqlx::Result<Vec<R>>
    where
        C: sqlx::Connection,
        C::Database: Driver<Connection = C>,
        R: Readable,
    {
        let rows = <C::Database as Driver>::fetch_all(conn, &self.sql, Self::args(params)).await?;
        rows.iter().map(<C::Database as Driver>::read).collect()
    }

    /// Runs it on `conn`; its first row, if any.
    pub(crate) async fn fetch_optional<C, R>(
        &'static self,
        conn: &mut C,
        params: P::Of<'_>,
    ) -> sqlx::Result<Option<R>>
    where
        C: sqlx::Connection,
        C::Database: Driver<Connection = C>,
        R: Readable,
    {
        let rows = <C::Database as Driver>::fetch_all(conn, &self.sql, Self::args(params)).await?;
        rows.first().map(<C::Database as Driver>::read).transpose()
    }

    /// Runs it on `conn`; its first row, which must exist.
    pub(crate) async fn fetch_one<C, R>(
        &'static self,
        conn: &mut C,
        params: P::Of<'_>,
    ) -> sqlx::Result<R>
    where
        C: sqlx::Connection,
        C::Database: Driver<Connection = C>,
        R: Readable,
    {
        self.fetch_optional(conn, params)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }
}

/// Every statement of one engine.
pub(crate) struct Queries {
    pub insert_application: Statement<(ApplicationId, String, StoredTime)>,
    pub insert_api_key: Statement<(ApiKeyId, ApplicationId, Vec<u8>, StoredTime)>,
    pub list_applications: Statement<()>,
    pub find_api_key: Statement<(ApiKeyId,)>,
    pub add_api_key: Statement<(ApiKeyId, ApplicationId, Vec<u8>, StoredTime)>,
    pub list_api_keys: Statement<(ApplicationId,)>,
    pub revoke_api_key: Statement<(ApplicationId, ApiKeyId, StoredTime)>,
    pub insert_enrollment: Statement<(
        EnrollmentId,
        ApplicationId,
        UserId,
        Vec<u8>,
        StoredTime,
        StoredTime,
    )>,
    pub consume_enrollment: Statement<(EnrollmentId, StoredTime)>,
    pub insert_device: Statement<(DeviceId, ApplicationId, UserId, String, Vec<u8>, StoredTime)>,
    pub find_device: Statement<(DeviceId,)>,
    pub list_devices: Statement<(ApplicationId, Option<UserId>)>,
    pub touch_device: Statement<(DeviceId, StoredTime)>,
    pub held_by: Statement<(DeviceId,)>,
    pub held_ids: Statement<(DeviceId,)>,
    pub revoke_device: Statement<(DeviceId, ApplicationId, StoredTime)>,
    pub find_transaction: Statement<(TransactionId, ApplicationId)>,
    pub overdue_transactions: Statement<(StoredTime, i64)>,
    pub open_confirmations: Statement<(DeviceId, ApplicationId, UserId)>,
    pub open_push: Statement<(ApplicationId, UserId)>,
    pub count_unanswered_pushes: Statement<(ApplicationId, UserId, StoredTime, TransactionState)>,
    pub events_head: Statement<(ApplicationId,)>,
    pub purge_events: Statement<(StoredTime,)>,
    pub last_event_of: Statement<(ApplicationId, TransactionId)>,
    pub current_server_key: Statement<()>,
    pub server_keys: Statement<()>,
    pub retire_server_key: Statement<(StoredTime,)>,
    pub insert_server_key: Statement<(String, Vec<u8>, Vec<u8>, StoredTime)>,
    pub last_checkpoint: Statement<(ApplicationId,)>,
    pub checkpoints: Statement<(ApplicationId,)>,
    pub insert_checkpoint: Statement<CheckpointParams>,
    pub stored_events: Statement<(ApplicationId, i64, i64)>,
    pub renew_replica: Statement<(StoredUuid, StoredTime)>,
    pub stream_opened: Statement<(StoredUuid, DeviceId, StoredUuid, StoredTime)>,
    pub stream_closed: Statement<(StoredUuid,)>,
    pub replica_streams_gone: Statement<(StoredUuid,)>,
    pub replica_gone: Statement<(StoredUuid,)>,
    pub dead_streams_gone: Statement<(StoredTime,)>,
    pub dead_replicas_gone: Statement<(StoredTime,)>,
    pub connected_devices: Statement<(ApplicationId, Option<UserId>, StoredTime)>,
    pub live_replicas: Statement<(StoredTime,)>,
    pub listen_application: Statement<(ApplicationId, String, StoredUuid)>,
    pub unlisten_application: Statement<(ApplicationId, String, StoredUuid)>,
    pub replica_listeners_gone: Statement<(StoredUuid,)>,
    pub dead_listeners_gone: Statement<(StoredTime,)>,
    /// OpenID CIBA's statements (`store::ciba`).
    pub ciba: super::ciba_sql::CibaQueries,
    /// Webhook endpoints' statements (`store::webhooks`).
    pub webhooks: super::webhook_sql::WebhookQueries,
    /// The statements whose text differs between the engines.
    pub dialect: DialectQueries,
}

/// A checkpoint's columns, in table order.
pub(crate) type CheckpointParams = (
    ApplicationId,
    i64,
    i64,
    i64,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    String,
    Vec<u8>,
    StoredTime,
);

/// A device event: application, type, user, device, time.
pub(crate) type DeviceEventParams = (
    ApplicationId,
    EventType,
    Option<UserId>,
    Option<DeviceId>,
    StoredTime,
);

/// The statements each engine writes in its own dialect.
pub(crate) struct DialectQueries {
    /// Inserts a new transaction (with its event, where `append_event` is `None`).
    pub insert_transaction: Statement<ChangeShape>,
    /// The compare-and-set and guards of a change to a stored transaction
    /// (with its event and the strike given back, where those are `None`).
    pub update_transaction: Statement<ChangeShape>,
    /// Appends a change's event after its write, where that write did not.
    pub append_event: Option<Statement<ChangeShape>>,
    /// How an OTP lookup is reserved.
    pub reserve_otp_attempt: Reserve,
    /// Appends a device's event.
    pub append_device_event: Statement<DeviceEventParams>,
    /// An application's events after a cursor, up to a head, at most a limit.
    pub events_after: Statement<(ApplicationId, i64, i64, i64)>,
    /// The same up to the newest committed event, each row with that head
    /// (one round trip where there is something to read).
    pub events_to_head: Statement<(ApplicationId, i64, i64)>,
    /// Where an application's log stands.
    pub event_head: Statement<(ApplicationId,)>,
    /// Whether a newer transaction's event of the device committed first;
    /// `None` where one writer commits in order.
    pub overtaken_by_device_event: Option<Statement<(DeviceId, ApplicationId)>>,
    /// The user's last fraud report.
    pub last_fraud_report: Statement<(ApplicationId, UserId)>,
    /// The highest cursor retention removed.
    pub purged_through: Statement<()>,
    /// Remembers the highest removed cursor.
    pub mark_purged: Statement<(i64,)>,
    /// The database's clock.
    pub database_time: Statement<()>,
}

/// How an engine reserves an OTP lookup.
pub(crate) enum Reserve {
    /// One statement takes the strike and reads the transaction: one row,
    /// `allowed` and then the transaction's columns (null if none).
    AndFind(Statement<StrikeAndLookupShape>),
    /// The statement only takes the strike (one row changed if allowed);
    /// the transaction is read after it.
    Alone(Statement<StrikeAndLookupShape>),
}
