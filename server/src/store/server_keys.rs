//! The server's event-signing keys, shared by every replica: the contract
//! and its one implementation for every engine.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use super::codec::StoredTime;
use super::engine::{Engine, connection};
use super::rows::{ServerKeyRow, convert};

/// One of the server's event-signing keys as stored.
#[derive(Clone)]
pub struct ServerKeyRecord {
    /// Its id ([`assent_proto::signing::key_id`] of the public key).
    pub id: String,
    /// The Ed25519 public key.
    pub public_key: [u8; 32],
    /// The Ed25519 secret key (seed).
    pub secret_key: [u8; 32],
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was rotated out; `None` while current.
    pub retired_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for ServerKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKeyRecord")
            .field("id", &self.id)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// The server's event-signing keys, shared by every replica.
#[async_trait]
pub trait ServerKeyStore: Send + Sync {
    /// The current key, if there is one.
    async fn current_server_key(&self) -> StoreResult<Option<ServerKeyRecord>>;
    /// Makes `key` the current key: first retiring the current one when
    /// `rotate`, else only if there is none. `false` if another key is
    /// current (and `rotate` was not asked).
    async fn add_server_key(&self, key: &ServerKeyRecord, rotate: bool) -> StoreResult<bool>;
    /// Every key, newest first.
    async fn server_keys(&self) -> StoreResult<Vec<ServerKeyRecord>>;
}

#[async_trait]
impl<E: Engine> ServerKeyStore for E {
    async fn current_server_key(&self) -> StoreResult<Option<ServerKeyRecord>> {
        let mut conn = connection::<E>(self.reader()).await?;
        let row: Option<ServerKeyRow> = E::queries()
            .current_server_key
            .fetch_optional(&mut *conn, ())
            .await
            .map_err(E::error)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn add_server_key(&self, key: &ServerKeyRecord, rotate: bool) -> StoreResult<bool> {
        let q = E::queries();
        let mut tx = self.writer().begin().await.map_err(E::error)?;
        if rotate {
            let at = (StoredTime(key.created_at),);
            q.retire_server_key
                .execute(&mut *tx, at)
                .await
                .map_err(E::error)?;
        }
        let row = (
            key.id.clone(),
            key.public_key.to_vec(),
            key.secret_key.to_vec(),
            StoredTime(key.created_at),
        );
        if q.insert_server_key
            .execute(&mut *tx, row)
            .await
            .map_err(E::error)?
            == 0
        {
            return Ok(false);
        }
        tx.commit().await.map_err(E::error)?;
        Ok(true)
    }

    async fn server_keys(&self) -> StoreResult<Vec<ServerKeyRecord>> {
        let mut conn = connection::<E>(self.reader()).await?;
        let rows: Vec<ServerKeyRow> = E::queries()
            .server_keys
            .fetch_all(&mut *conn, ())
            .await
            .map_err(E::error)?;
        convert(rows)
    }
}
