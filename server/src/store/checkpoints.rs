//! The sealed checkpoints of the event logs: the contract and its one
//! implementation for every engine.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::codec::StoredTime;
use super::engine::{Engine, connection};
use super::rows::{CheckpointRow, EventRow};
use super::{EventRecord, StoreResult};
use crate::domain::ApplicationId;

/// One sealed checkpoint of an application's event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The application.
    pub application_id: ApplicationId,
    /// Its place in the chain, from 1.
    pub seq: i64,
    /// The previous checkpoint's `through_cursor` (0 for the first).
    pub from_cursor: i64,
    /// The highest cursor it seals.
    pub through_cursor: i64,
    /// Every sealed event: its cursor (8 bytes, big-endian) and the
    /// SHA-256 of its signed bytes (32 bytes).
    pub entries: Vec<u8>,
    /// The previous checkpoint's hash (32 zero bytes for the first).
    pub prev_hash: Vec<u8>,
    /// SHA-256 over the checkpoint's canonical bytes.
    pub hash: Vec<u8>,
    /// The server key that signed `hash`.
    pub key_id: String,
    /// Its Ed25519 signature over `hash`.
    pub signature: Vec<u8>,
    /// When it was sealed.
    pub created_at: DateTime<Utc>,
}

/// The sealed checkpoints of the event logs.
#[async_trait]
pub trait CheckpointStore: Send + Sync {
    /// The application's newest checkpoint.
    async fn last_checkpoint(&self, app: ApplicationId) -> StoreResult<Option<Checkpoint>>;
    /// Appends a checkpoint; `false` if its `seq` was taken meanwhile (by
    /// another replica).
    async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<bool>;
    /// The application's checkpoints in chain order.
    async fn checkpoints(&self, app: ApplicationId) -> StoreResult<Vec<Checkpoint>>;
    /// Every stored event of the application with a cursor in
    /// `(after, through]`, in cursor order, as the rows are now.
    async fn stored_events(
        &self,
        app: ApplicationId,
        after: i64,
        through: i64,
    ) -> StoreResult<Vec<EventRecord>>;
}

#[async_trait]
impl<E: Engine> CheckpointStore for E {
    async fn last_checkpoint(&self, app: ApplicationId) -> StoreResult<Option<Checkpoint>> {
        let mut conn = connection::<E>(self.reader()).await?;
        let row: Option<CheckpointRow> = E::queries()
            .last_checkpoint
            .fetch_optional(&mut *conn, (app,))
            .await
            .map_err(E::error)?;
        Ok(row.map(Into::into))
    }

    async fn add_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<bool> {
        let mut conn = connection::<E>(self.writer()).await?;
        let c = checkpoint.clone();
        let row = (
            c.application_id,
            c.seq,
            c.from_cursor,
            c.through_cursor,
            c.entries,
            c.prev_hash,
            c.hash,
            c.key_id,
            c.signature,
            StoredTime(c.created_at),
        );
        let added = E::queries()
            .insert_checkpoint
            .execute(&mut *conn, row)
            .await
            .map_err(E::error)?;
        Ok(added == 1)
    }

    async fn checkpoints(&self, app: ApplicationId) -> StoreResult<Vec<Checkpoint>> {
        let mut conn = connection::<E>(self.reader()).await?;
        let rows: Vec<CheckpointRow> = E::queries()
            .checkpoints
            .fetch_all(&mut *conn, (app,))
            .await
            .map_err(E::error)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn stored_events(
        &self,
        app: ApplicationId,
        after: i64,
        through: i64,
    ) -> StoreResult<Vec<EventRecord>> {
        let mut conn = connection::<E>(self.reader()).await?;
        let rows: Vec<EventRow> = E::queries()
            .stored_events
            .fetch_all(&mut *conn, (app, after, through))
            .await
            .map_err(E::error)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}
