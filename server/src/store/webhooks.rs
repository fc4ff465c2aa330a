//! Webhook endpoints and their delivery log: the contract, its statements
//! (the same text on both engines) and its one implementation for every
//! engine. The endpoint row is the durable position of its deliveries
//! (`delivered_through`) and the lease of the replica delivering to it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreResult;
use super::codec::{StoredTime, StoredUuid};
use super::engine::{Engine, connection};
use super::webhook_sql::{AttemptRow, EndpointRow, record};
use crate::domain::ApplicationId;
use crate::domain::webhook::{WebhookId, WebhookSecret, WebhookUrl};

/// One stored endpoint.
#[derive(Debug, Clone)]
pub struct WebhookRecord {
    /// Its id.
    pub id: WebhookId,
    /// Whose events it receives.
    pub application_id: ApplicationId,
    /// Where they are posted.
    pub url: WebhookUrl,
    /// The signing secret.
    pub secret: WebhookSecret,
    /// The previous secret, while it still signs after a rotation.
    pub previous_secret: Option<(WebhookSecret, DateTime<Utc>)>,
    /// The event position delivered through.
    pub delivered_through: i64,
    /// Consecutive failed attempts.
    pub failures: i64,
    /// Since when it fails without a success.
    pub failing_since: Option<DateTime<Utc>>,
    /// When the next attempt is due.
    pub next_attempt_at: DateTime<Utc>,
    /// When it was paused, and why.
    pub paused: Option<(DateTime<Utc>, String)>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// When it started.
    pub attempted_at: DateTime<Utc>,
    /// The event's `webhook-id`.
    pub event_id: String,
    /// The HTTP status, if an answer came.
    pub status: Option<i64>,
    /// What went wrong, if anything did.
    pub error: Option<String>,
    /// How long it took, in milliseconds.
    pub latency_ms: i64,
}

/// How a failed attempt leaves its endpoint.
#[derive(Debug, Clone)]
pub struct FailedAttempt {
    /// When the next attempt is due.
    pub next_attempt_at: DateTime<Utc>,
    /// The time of this failure (kept as `failing_since` if it is the first).
    pub at: DateTime<Utc>,
    /// Set when the endpoint failed too long: it is paused with this reason.
    pub pause: Option<String>,
}

/// Webhook endpoints and their delivery log.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Stores a new endpoint delivering what comes after `after`.
    async fn create_webhook(
        &self,
        id: WebhookId,
        app: ApplicationId,
        url: &WebhookUrl,
        secret: &WebhookSecret,
        after: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The application's endpoints.
    async fn list_webhooks(&self, app: ApplicationId) -> StoreResult<Vec<WebhookRecord>>;
    /// Pauses (with a reason) or resumes (`None`) an endpoint; resuming
    /// clears its failures. `false` if the application has no such endpoint.
    async fn set_webhook_paused(
        &self,
        app: ApplicationId,
        id: WebhookId,
        pause: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Deletes an endpoint and its log.
    async fn delete_webhook(&self, app: ApplicationId, id: WebhookId) -> StoreResult<bool>;
    /// Makes `secret` current; the old one also signs until `grace_until`.
    async fn rotate_webhook_secret(
        &self,
        app: ApplicationId,
        id: WebhookId,
        secret: &WebhookSecret,
        grace_until: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Leases to `owner` until `until` one unpaused endpoint that is due at
    /// `now`, has events after its position and no valid lease.
    async fn claim_webhook(
        &self,
        owner: Uuid,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<WebhookRecord>>;
    /// Extends `owner`'s lease; `false` if it lost it.
    async fn renew_webhook_lease(
        &self,
        id: WebhookId,
        owner: Uuid,
        until: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Records a 2xx for the event at `cursor`: the position moves there and
    /// the failures are cleared. `false` if `owner` lost the lease.
    async fn webhook_delivered(&self, id: WebhookId, owner: Uuid, cursor: i64)
    -> StoreResult<bool>;
    /// Records a failure and gives the lease up.
    async fn webhook_failed(
        &self,
        id: WebhookId,
        owner: Uuid,
        failed: &FailedAttempt,
    ) -> StoreResult<()>;
    /// Gives `owner`'s lease up.
    async fn release_webhook(&self, id: WebhookId, owner: Uuid) -> StoreResult<()>;
    /// Appends to the endpoint's delivery log, keeping the newest `keep`.
    async fn log_webhook_attempt(
        &self,
        id: WebhookId,
        attempt: &DeliveryAttempt,
        keep: i64,
    ) -> StoreResult<()>;
    /// The endpoint's newest attempts, newest first.
    async fn webhook_log(
        &self,
        app: ApplicationId,
        id: WebhookId,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryAttempt>>;
}

#[async_trait]
impl<E: Engine> WebhookStore for E {
    async fn create_webhook(
        &self,
        id: WebhookId,
        app: ApplicationId,
        url: &WebhookUrl,
        secret: &WebhookSecret,
        after: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut conn = connection::<E>(self.writer()).await?;
        let row = (
            StoredUuid(id.0),
            app,
            url.as_str().to_owned(),
            secret.expose().to_owned(),
            after,
            StoredTime(now),
        );
        let q = &E::queries().webhooks;
        q.insert.execute(&mut *conn, row).await.map_err(E::error)?;
        Ok(())
    }

    async fn list_webhooks(&self, app: ApplicationId) -> StoreResult<Vec<WebhookRecord>> {
        let mut conn = connection::<E>(self.reader()).await?;
        let q = &E::queries().webhooks;
        let rows: Vec<EndpointRow> = q
            .list
            .fetch_all(&mut *conn, (app,))
            .await
            .map_err(E::error)?;
        rows.into_iter().map(record).collect()
    }

    async fn set_webhook_paused(
        &self,
        app: ApplicationId,
        id: WebhookId,
        pause: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut conn = connection::<E>(self.writer()).await?;
        let q = &E::queries().webhooks;
        let params = (
            StoredUuid(id.0),
            app,
            pause.map(|_| StoredTime(now)),
            pause.map(str::to_owned),
            StoredTime(now),
        );
        let changed = q
            .set_paused
            .execute(&mut *conn, params)
            .await
            .map_err(E::error)?;
        Ok(changed > 0)
    }

    async fn delete_webhook(&self, app: ApplicationId, id: WebhookId) -> StoreResult<bool> {
        let mut conn = connection::<E>(self.writer()).await?;
        let q = &E::queries().webhooks;
        let changed = q
            .delete
            .execute(&mut *conn, (StoredUuid(id.0), app))
            .await
            .map_err(E::error)?;
        Ok(changed > 0)
    }

    async fn rotate_webhook_secret(
        &self,
        app: ApplicationId,
        id: WebhookId,
        secret: &WebhookSecret,
        grace_until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut conn = connection::<E>(self.writer()).await?;
        let q = &E::queries().webhooks;
        let params = (
            StoredUuid(id.0),
            app,
            secret.expose().to_owned(),
            StoredTime(grace_until),
        );
        let changed = q
            .rotate
            .execute(&mut *conn, params)
            .await
            .map_err(E::error)?;
        Ok(changed > 0)
    }

    async fn claim_webhook(
        &self,
        owner: Uuid,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<WebhookRecord>> {
        let mut conn = connection::<E>(self.writer()).await?;
        let q = &E::queries().webhooks;
        let params = (StoredUuid(owner), StoredTime(until), StoredTime(now));
        let row: Option<EndpointRow> = q
            .claim
            .fetch_optional(&mut *conn, params)
            .await
            .map_err(E::error)?;
        row.map(record).transpose()
    }

    async fn renew_webhook_lease(
        &self,
        id: WebhookId,
        owner: Uuid,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut conn = connection::<E>(self.writer()).await?;
        let q = &E::queries().webhooks;
        let params = (StoredUuid(id.0), StoredUuid(owner), StoredTime(until));
        let changed = q
            .renew
            .execute(&mut *conn, params)
            .await
            .map_err(E::error)?;
        Ok(changed > 0)
    }

    async fn webhook_delivered(
        &self,
        id: WebhookId,
        owner: Uuid,
        cursor: i64,
    ) -> StoreResult<bool> {
        let mut conn = connection::<E>(self.writer()).await?;
        let q = &E::queries().webhooks;
        let params = (StoredUuid(id.0), StoredUuid(owner), cursor);
        let changed = q
            .delivered
            .execute(&mut *conn, params)
            .await
            .map_err(E::error)?;
        Ok(changed > 0)
    }

    async fn webhook_failed(
        &self,
        id: WebhookId,
        owner: Uuid,
        failed: &FailedAttempt,
    ) -> StoreResult<()> {
        let mut conn = connection::<E>(self.writer()).await?;
        let q = &E::queries().webhooks;
        let params = (
            StoredUuid(id.0),
            StoredUuid(owner),
            StoredTime(failed.next_attempt_at),
            StoredTime(failed.at),
            failed.pause.clone(),
        );
        q.failed
            .execute(&mut *conn, params)
            .await
            .map_err(E::error)?;
        Ok(())
    }

    async fn release_webhook(&self, id: WebhookId, owner: Uuid) -> StoreResult<()> {
        let mut conn = connection::<E>(self.writer()).await?;
        let q = &E::queries().webhooks;
        q.release
            .execute(&mut *conn, (StoredUuid(id.0), StoredUuid(owner)))
            .await
            .map_err(E::error)?;
        Ok(())
    }

    async fn log_webhook_attempt(
        &self,
        id: WebhookId,
        attempt: &DeliveryAttempt,
        keep: i64,
    ) -> StoreResult<()> {
        let q = &E::queries().webhooks;
        let mut tx = self.writer().begin().await.map_err(E::error)?;
        let row = (
            StoredUuid(id.0),
            StoredTime(attempt.attempted_at),
            attempt.event_id.clone(),
            attempt.status,
            attempt.error.clone(),
            attempt.latency_ms,
        );
        q.log_insert
            .execute(&mut *tx, row)
            .await
            .map_err(E::error)?;
        q.log_trim
            .execute(&mut *tx, (StoredUuid(id.0), keep))
            .await
            .map_err(E::error)?;
        tx.commit().await.map_err(E::error)?;
        Ok(())
    }

    async fn webhook_log(
        &self,
        app: ApplicationId,
        id: WebhookId,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryAttempt>> {
        let mut conn = connection::<E>(self.reader()).await?;
        let q = &E::queries().webhooks;
        let rows: Vec<AttemptRow> = q
            .log_read
            .fetch_all(&mut *conn, (StoredUuid(id.0), app, limit))
            .await
            .map_err(E::error)?;
        Ok(rows
            .into_iter()
            .map(
                |(at, event_id, status, error, latency_ms)| DeliveryAttempt {
                    attempted_at: at.0,
                    event_id,
                    status,
                    error,
                    latency_ms,
                },
            )
            .collect())
    }
}
