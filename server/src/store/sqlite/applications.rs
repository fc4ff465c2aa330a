//! Applications and API keys on SQLite.

use async_trait::async_trait;

use super::{SqliteStore, db_error, micros, time, uuid};
use crate::domain::{ApiKeyId, ApplicationId, SecretHash};
use crate::store::{
    ApiKeyRecord, Application, ApplicationStore, NewApiKey, StoreError, StoreResult,
};

#[async_trait]
impl ApplicationStore for SqliteStore {
    async fn create_application(&self, app: &Application, key: &NewApiKey) -> StoreResult<()> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        sqlx::query("INSERT INTO applications (id, name, created_at) VALUES (?1, ?2, ?3)")
            .bind(app.id.to_string())
            .bind(&app.name)
            .bind(micros(app.created_at))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO api_keys (id, application_id, secret_hash, created_at) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(key.id.to_string())
        .bind(app.id.to_string())
        .bind(key.secret_hash.as_bytes().as_slice())
        .bind(micros(key.created_at))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn list_applications(&self) -> StoreResult<Vec<Application>> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT id, name, created_at FROM applications ORDER BY created_at, id")
                .fetch_all(&self.reader)
                .await
                .map_err(db_error)?;
        rows.into_iter()
            .map(|(id, name, created_at)| {
                Ok(Application {
                    id: ApplicationId::from_uuid(uuid(&id)?),
                    name,
                    created_at: time(created_at)?,
                })
            })
            .collect()
    }

    async fn find_api_key(&self, id: ApiKeyId) -> StoreResult<Option<ApiKeyRecord>> {
        let row: Option<(Vec<u8>, String, String, i64)> = sqlx::query_as(
            "SELECT k.secret_hash, a.id, a.name, a.created_at FROM api_keys k \
             JOIN applications a ON a.id = k.application_id \
             WHERE k.id = ?1 AND k.revoked_at IS NULL",
        )
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(db_error)?;
        row.map(|(hash, app_id, name, created_at)| {
            Ok(ApiKeyRecord {
                id,
                secret_hash: SecretHash::from_slice(&hash)
                    .ok_or_else(|| StoreError::Corrupt(format!("api key {id}: bad hash")))?,
                application: Application {
                    id: ApplicationId::from_uuid(uuid(&app_id)?),
                    name,
                    created_at: time(created_at)?,
                },
            })
        })
        .transpose()
    }
}
