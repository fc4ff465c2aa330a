//! Which devices hold a live stream, on any replica: the contract and its
//! one implementation for every engine.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreResult;
use super::codec::{StoredTime, StoredUuid};
use super::engine::{Engine, connection};
use super::queries::Statement;
use crate::domain::{ApplicationId, DeviceId, UserId};

/// What a replica listens to of an application (a `listeners` row's kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interest {
    /// Its event log's wake-ups (event subscribers are here).
    Events,
    /// Its transactions settling (outcome waiters are here).
    Outcomes,
}

impl Interest {
    /// The stored kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::Outcomes => "outcomes",
        }
    }
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
    ) -> StoreResult<HashSet<DeviceId>>;
    /// `replica` holds event subscribers or outcome waiters (`interest`) of
    /// `app`: the relay sends it those notices of the application
    /// (idempotent).
    async fn application_listened(
        &self,
        app: ApplicationId,
        interest: Interest,
        replica: Uuid,
    ) -> StoreResult<()>;
    /// `replica` holds none any more.
    async fn application_unlistened(
        &self,
        app: ApplicationId,
        interest: Interest,
        replica: Uuid,
    ) -> StoreResult<()>;
}

#[async_trait]
impl<E: Engine> PresenceStore for E {
    async fn renew_replica(&self, replica: Uuid, expires_at: DateTime<Utc>) -> StoreResult<()> {
        let mut conn = connection::<E>(self.writer()).await?;
        let lease = (StoredUuid(replica), StoredTime(expires_at));
        let q = E::queries();
        q.renew_replica
            .execute(&mut *conn, lease)
            .await
            .map_err(E::error)?;
        Ok(())
    }

    async fn stream_opened(
        &self,
        stream: Uuid,
        device: DeviceId,
        replica: Uuid,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut conn = connection::<E>(self.writer()).await?;
        let row = (
            StoredUuid(stream),
            device,
            StoredUuid(replica),
            StoredTime(at),
        );
        let q = E::queries();
        q.stream_opened
            .execute(&mut *conn, row)
            .await
            .map_err(E::error)?;
        Ok(())
    }

    async fn stream_closed(&self, stream: Uuid) -> StoreResult<()> {
        let mut conn = connection::<E>(self.writer()).await?;
        let q = E::queries();
        q.stream_closed
            .execute(&mut *conn, (StoredUuid(stream),))
            .await
            .map_err(E::error)?;
        Ok(())
    }

    async fn replica_stopped(&self, replica: Uuid) -> StoreResult<()> {
        let q = E::queries();
        let mut tx = self.writer().begin().await.map_err(E::error)?;
        for statement in [
            &q.replica_streams_gone,
            &q.replica_listeners_gone,
            &q.replica_gone,
        ] {
            statement
                .execute(&mut *tx, (StoredUuid(replica),))
                .await
                .map_err(E::error)?;
        }
        tx.commit().await.map_err(E::error)?;
        Ok(())
    }

    async fn forget_dead_replicas(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let q = E::queries();
        let mut tx = self.writer().begin().await.map_err(E::error)?;
        let before = (StoredTime(before),);
        let streams = q
            .dead_streams_gone
            .execute(&mut *tx, before)
            .await
            .map_err(E::error)?;
        q.dead_listeners_gone
            .execute(&mut *tx, before)
            .await
            .map_err(E::error)?;
        q.dead_replicas_gone
            .execute(&mut *tx, before)
            .await
            .map_err(E::error)?;
        tx.commit().await.map_err(E::error)?;
        Ok(streams)
    }

    async fn live_replicas(&self, now: DateTime<Utc>) -> StoreResult<i64> {
        let mut conn = connection::<E>(self.reader()).await?;
        let q = E::queries();
        let (live,): (i64,) = q
            .live_replicas
            .fetch_one(&mut *conn, (StoredTime(now),))
            .await
            .map_err(E::error)?;
        Ok(live)
    }

    async fn connected_devices(
        &self,
        app: ApplicationId,
        user: Option<&UserId>,
        now: DateTime<Utc>,
    ) -> StoreResult<HashSet<DeviceId>> {
        let mut conn = connection::<E>(self.reader()).await?;
        let ids: Vec<(DeviceId,)> = E::queries()
            .connected_devices
            .fetch_all(&mut *conn, (app, user.cloned(), StoredTime(now)))
            .await
            .map_err(E::error)?;
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    async fn application_listened(
        &self,
        app: ApplicationId,
        interest: Interest,
        replica: Uuid,
    ) -> StoreResult<()> {
        listener_row(
            self,
            &E::queries().listen_application,
            app,
            interest,
            replica,
        )
        .await
    }

    async fn application_unlistened(
        &self,
        app: ApplicationId,
        interest: Interest,
        replica: Uuid,
    ) -> StoreResult<()> {
        listener_row(
            self,
            &E::queries().unlisten_application,
            app,
            interest,
            replica,
        )
        .await
    }
}

/// Inserts or deletes (`statement`) one `listeners` row.
async fn listener_row<E: Engine>(
    store: &E,
    statement: &'static Statement<(ApplicationId, String, StoredUuid)>,
    app: ApplicationId,
    interest: Interest,
    replica: Uuid,
) -> StoreResult<()> {
    let mut conn = connection::<E>(store.writer()).await?;
    let row = (app, interest.as_str().to_owned(), StoredUuid(replica));
    statement.execute(&mut *conn, row).await.map_err(E::error)?;
    Ok(())
}
