//! The event log: the contract and its one implementation for every engine.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::codec::StoredTime;
use super::engine::{Engine, connection};
use super::rows::{EventRow, HeadedEventRow};
use super::{EventRecord, StoreResult};
use crate::domain::{ApplicationId, TransactionId};

/// The event log.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// The application's events with a cursor above `after`, in cursor order.
    async fn events_after(
        &self,
        app: ApplicationId,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<EventRecord>>;
    /// The highest cursor that retention has removed (0 if none).
    async fn purged_through(&self) -> StoreResult<i64>;
    /// The database's own clock, now.
    async fn database_time(&self) -> StoreResult<DateTime<Utc>>;
    /// Deletes events older than `events_before`.
    async fn purge(&self, events_before: DateTime<Utc>) -> StoreResult<u64>;
    /// Where the application's log stands now.
    async fn event_head(&self, app: ApplicationId) -> StoreResult<EventHead>;
    /// The transaction's latest event.
    async fn last_event_of(
        &self,
        app: ApplicationId,
        id: TransactionId,
    ) -> StoreResult<Option<EventRecord>>;
}

/// Where an application's event log stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHead {
    /// The highest cursor of its committed events (0 if none).
    pub newest: i64,
    /// A cursor to start "from now" at: every event not committed yet will
    /// come after it (some just committed may too).
    pub start: i64,
}

#[async_trait]
impl<E: Engine> EventStore for E {
    async fn events_after(
        &self,
        app: ApplicationId,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<EventRecord>> {
        let q = E::queries();
        let mut conn = connection::<E>(self.reader()).await?;
        // Everything committed before this call is returned: where older
        // transactions may still commit, wait (briefly, pause by pause)
        // until those older than the newest committed event have finished.
        // Usually one statement reads the head and what is readable up to
        // it; when nothing is readable, the head says whether to wait.
        let first: Vec<HeadedEventRow> = q
            .dialect
            .events_to_head
            .fetch_all(&mut *conn, (app, after, limit))
            .await
            .map_err(E::error)?;
        let head = match first.first() {
            Some(row) => row.head,
            None => {
                let (head,): (Option<i64>,) = q
                    .events_head
                    .fetch_one(&mut *conn, (app,))
                    .await
                    .map_err(E::error)?;
                match head.filter(|&head| head > after) {
                    Some(head) => head,
                    None => return Ok(Vec::new()),
                }
            }
        };
        let mut read: Option<Vec<EventRow>> = Some(first.into_iter().map(|r| r.event).collect());
        let mut pauses = E::VISIBILITY_PAUSES.iter();
        loop {
            let rows: Vec<EventRow> = match read.take().filter(|rows| !rows.is_empty()) {
                Some(rows) => rows,
                None => q
                    .dialect
                    .events_after
                    .fetch_all(&mut *conn, (app, after, limit, head))
                    .await
                    .map_err(E::error)?,
            };
            // No connection is held while pausing.
            drop(conn);
            let complete = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= limit
                || rows.last().is_some_and(|row| row.position() == head);
            match pauses.next() {
                Some(pause) if !complete => tokio::time::sleep(*pause).await,
                _ => return Ok(rows.into_iter().map(Into::into).collect()),
            }
            conn = connection::<E>(self.reader()).await?;
        }
    }

    async fn purged_through(&self) -> StoreResult<i64> {
        let mut conn = connection::<E>(self.reader()).await?;
        let q = &E::queries().dialect;
        let (through,): (i64,) = q
            .purged_through
            .fetch_one(&mut *conn, ())
            .await
            .map_err(E::error)?;
        Ok(through)
    }

    async fn database_time(&self) -> StoreResult<DateTime<Utc>> {
        let mut conn = connection::<E>(self.reader()).await?;
        let q = &E::queries().dialect;
        let (now,): (StoredTime,) = q
            .database_time
            .fetch_one(&mut *conn, ())
            .await
            .map_err(E::error)?;
        Ok(now.0)
    }

    async fn purge(&self, events_before: DateTime<Utc>) -> StoreResult<u64> {
        let q = E::queries();
        let mut tx = self.writer().begin().await.map_err(E::error)?;
        let deleted: Vec<(i64,)> = q
            .purge_events
            .fetch_all(&mut *tx, (StoredTime(events_before),))
            .await
            .map_err(E::error)?;
        if let Some(highest) = deleted.iter().map(|(position,)| *position).max() {
            let mark = &q.dialect.mark_purged;
            mark.execute(&mut *tx, (highest,)).await.map_err(E::error)?;
        }
        tx.commit().await.map_err(E::error)?;
        Ok(u64::try_from(deleted.len()).unwrap_or(u64::MAX))
    }

    async fn event_head(&self, app: ApplicationId) -> StoreResult<EventHead> {
        let mut conn = connection::<E>(self.reader()).await?;
        let q = &E::queries().dialect;
        let (newest, start): (i64, i64) = q
            .event_head
            .fetch_one(&mut *conn, (app,))
            .await
            .map_err(E::error)?;
        Ok(EventHead {
            newest,
            start: start.max(0),
        })
    }

    async fn last_event_of(
        &self,
        app: ApplicationId,
        id: TransactionId,
    ) -> StoreResult<Option<EventRecord>> {
        let mut conn = connection::<E>(self.reader()).await?;
        let row: Option<EventRow> = E::queries()
            .last_event_of
            .fetch_optional(&mut *conn, (app, id))
            .await
            .map_err(E::error)?;
        Ok(row.map(Into::into))
    }
}
