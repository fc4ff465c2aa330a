//! Applications and their API keys: the contracts and their one
//! implementation for every engine.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::codec::StoredTime;
use super::engine::{Engine, connection};
use super::{ApiKeyInfo, ApiKeyRecord, Application, NewApiKey, StoreError, StoreResult};
use crate::domain::{ApiKeyId, ApplicationId, SecretHash};

/// Applications and their API keys.
#[async_trait]
pub trait ApplicationStore: Send + Sync {
    /// Stores a new application with its first API key.
    async fn create_application(&self, app: &Application, key: &NewApiKey) -> StoreResult<()>;
    /// Every application, oldest first.
    async fn list_applications(&self) -> StoreResult<Vec<Application>>;
    /// The unrevoked API key with this id, with its application.
    async fn find_api_key(&self, id: ApiKeyId) -> StoreResult<Option<ApiKeyRecord>>;
}

/// The life of API keys: added, listed, revoked (rotation = add, then revoke).
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Adds an API key to an existing application; `false` if there is no
    /// such application.
    async fn add_api_key(&self, app: ApplicationId, key: &NewApiKey) -> StoreResult<bool>;
    /// The application's keys, revoked ones included, oldest first.
    async fn list_api_keys(&self, app: ApplicationId) -> StoreResult<Vec<ApiKeyInfo>>;
    /// Revokes one of the application's keys; `false` if it has no such
    /// unrevoked key.
    async fn revoke_api_key(
        &self,
        app: ApplicationId,
        id: ApiKeyId,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
}

#[async_trait]
impl<E: Engine> ApplicationStore for E {
    async fn create_application(&self, app: &Application, key: &NewApiKey) -> StoreResult<()> {
        let q = E::queries();
        let mut tx = self.writer().begin().await.map_err(E::error)?;
        let row = (app.id, app.name.clone(), StoredTime(app.created_at));
        q.insert_application
            .execute(&mut *tx, row)
            .await
            .map_err(E::error)?;
        let key = (
            key.id,
            app.id,
            key.secret_hash.as_bytes().to_vec(),
            StoredTime(key.created_at),
        );
        q.insert_api_key
            .execute(&mut *tx, key)
            .await
            .map_err(E::error)?;
        tx.commit().await.map_err(E::error)
    }

    async fn list_applications(&self) -> StoreResult<Vec<Application>> {
        let mut conn = connection::<E>(self.reader()).await?;
        let rows: Vec<(ApplicationId, String, StoredTime)> = E::queries()
            .list_applications
            .fetch_all(&mut *conn, ())
            .await
            .map_err(E::error)?;
        Ok(rows
            .into_iter()
            .map(|(id, name, created_at)| Application {
                id,
                name,
                created_at: created_at.0,
            })
            .collect())
    }

    async fn find_api_key(&self, id: ApiKeyId) -> StoreResult<Option<ApiKeyRecord>> {
        let mut conn = connection::<E>(self.reader()).await?;
        let row: Option<(Vec<u8>, ApplicationId, String, StoredTime)> = E::queries()
            .find_api_key
            .fetch_optional(&mut *conn, (id,))
            .await
            .map_err(E::error)?;
        row.map(|(hash, app_id, name, created_at)| {
            Ok(ApiKeyRecord {
                id,
                secret_hash: SecretHash::from_slice(&hash)
                    .ok_or_else(|| StoreError::Corrupt(format!("api key {id}: bad hash")))?,
                application: Application {
                    id: app_id,
                    name,
                    created_at: created_at.0,
                },
            })
        })
        .transpose()
    }
}

#[async_trait]
impl<E: Engine> ApiKeyStore for E {
    async fn add_api_key(&self, app: ApplicationId, key: &NewApiKey) -> StoreResult<bool> {
        let mut conn = connection::<E>(self.writer()).await?;
        let key = (
            key.id,
            app,
            key.secret_hash.as_bytes().to_vec(),
            StoredTime(key.created_at),
        );
        let added = E::queries()
            .add_api_key
            .execute(&mut *conn, key)
            .await
            .map_err(E::error)?;
        Ok(added == 1)
    }

    async fn list_api_keys(&self, app: ApplicationId) -> StoreResult<Vec<ApiKeyInfo>> {
        let mut conn = connection::<E>(self.reader()).await?;
        let rows: Vec<(ApiKeyId, StoredTime, Option<StoredTime>)> = E::queries()
            .list_api_keys
            .fetch_all(&mut *conn, (app,))
            .await
            .map_err(E::error)?;
        Ok(rows
            .into_iter()
            .map(|(id, created_at, revoked_at)| ApiKeyInfo {
                id,
                created_at: created_at.0,
                revoked_at: revoked_at.map(|t| t.0),
            })
            .collect())
    }

    async fn revoke_api_key(
        &self,
        app: ApplicationId,
        id: ApiKeyId,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut conn = connection::<E>(self.writer()).await?;
        let revoked = E::queries()
            .revoke_api_key
            .execute(&mut *conn, (app, id, StoredTime(now)))
            .await
            .map_err(E::error)?;
        Ok(revoked == 1)
    }
}
