//! Webhook endpoints and their delivery log: the contract, its statements
//! (the same text on both engines) and its one implementation for every
//! engine. The endpoint row is the durable position of its deliveries
//! (`delivered_through`) and the lease of the replica delivering to it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::codec::{StoredTime, StoredUuid};
use super::engine::{Engine, connection};
use super::queries::Statement;
use super::{StoreError, StoreResult};
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

/// The endpoint columns every read returns, in [`EndpointRow`] order.
const ENDPOINT_COLUMNS: &str = "id, application_id, url, secret, previous_secret, previous_until, \
     delivered_through, failures, failing_since, next_attempt_at, paused_at, pause_reason, \
     created_at";

/// An endpoint as stored.
type EndpointRow = (
    StoredUuid,
    ApplicationId,
    String,
    String,
    Option<String>,
    Option<StoredTime>,
    i64,
    i64,
    Option<StoredTime>,
    StoredTime,
    Option<StoredTime>,
    Option<String>,
    StoredTime,
);

/// A delivery log entry as stored.
type AttemptRow = (StoredTime, String, Option<i64>, Option<String>, i64);

/// A pause or resume: endpoint, application, pause time and reason (none
/// to resume), now.
type PausedParams = (
    StoredUuid,
    ApplicationId,
    Option<StoredTime>,
    Option<String>,
    StoredTime,
);

/// A failure: endpoint, owner, next attempt, its time, a pause reason.
type FailedParams = (
    StoredUuid,
    StoredUuid,
    StoredTime,
    StoredTime,
    Option<String>,
);

/// A log entry: endpoint, time, event id, status, error, latency.
type AttemptParams = (
    StoredUuid,
    StoredTime,
    String,
    Option<i64>,
    Option<String>,
    i64,
);

/// The statements of this store, the same text on both engines.
pub(crate) struct WebhookQueries {
    pub insert: Statement<(StoredUuid, ApplicationId, String, String, i64, StoredTime)>,
    pub list: Statement<(ApplicationId,)>,
    pub set_paused: Statement<PausedParams>,
    pub delete: Statement<(StoredUuid, ApplicationId)>,
    pub rotate: Statement<(StoredUuid, ApplicationId, String, StoredTime)>,
    pub claim: Statement<(StoredUuid, StoredTime, StoredTime)>,
    pub renew: Statement<(StoredUuid, StoredUuid, StoredTime)>,
    pub delivered: Statement<(StoredUuid, StoredUuid, i64)>,
    pub failed: Statement<FailedParams>,
    pub release: Statement<(StoredUuid, StoredUuid)>,
    pub log_insert: Statement<AttemptParams>,
    pub log_trim: Statement<(StoredUuid, i64)>,
    pub log_read: Statement<(StoredUuid, ApplicationId, i64)>,
}

impl WebhookQueries {
    /// Every statement with its binder's arity, for the arity tests.
    #[cfg(test)]
    pub(crate) fn named(&self) -> Vec<(&'static str, usize, &str)> {
        use super::params::{Bind, Shape};
        fn one<'q, P: Shape>(
            name: &'static str,
            s: &'q Statement<P>,
        ) -> (&'static str, usize, &'q str) {
            (name, <P::Of<'static> as Bind>::ARITY, s.sql())
        }
        let Self {
            insert,
            list,
            set_paused,
            delete,
            rotate,
            claim,
            renew,
            delivered,
            failed,
            release,
            log_insert,
            log_trim,
            log_read,
        } = self;
        vec![
            one("webhooks insert", insert),
            one("webhooks list", list),
            one("webhooks set_paused", set_paused),
            one("webhooks delete", delete),
            one("webhooks rotate", rotate),
            one("webhooks claim", claim),
            one("webhooks renew", renew),
            one("webhooks delivered", delivered),
            one("webhooks failed", failed),
            one("webhooks release", release),
            one("webhooks log_insert", log_insert),
            one("webhooks log_trim", log_trim),
            one("webhooks log_read", log_read),
        ]
    }
}

/// The statements (one text for both engines).
pub(crate) fn queries() -> WebhookQueries {
    WebhookQueries {
        // `$6` is both the creation time and the first due time.
        insert: Statement::new(
            "INSERT INTO webhook_endpoints (id, application_id, url, secret, \
               delivered_through, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        ),
        list: Statement::new(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE application_id = $1 \
             ORDER BY created_at, id"
        )),
        set_paused: Statement::new(
            "UPDATE webhook_endpoints SET paused_at = $3, pause_reason = $4, failures = 0, \
               failing_since = NULL, next_attempt_at = $5 \
             WHERE id = $1 AND application_id = $2",
        ),
        delete: Statement::new(
            "DELETE FROM webhook_endpoints WHERE id = $1 AND application_id = $2",
        ),
        rotate: Statement::new(
            "UPDATE webhook_endpoints SET previous_secret = secret, previous_until = $4, \
               secret = $3 WHERE id = $1 AND application_id = $2",
        ),
        // The inner pick may race another replica's; the outer conditions
        // are checked again on the row as it is when it is written, so only
        // one replica takes a lease.
        claim: Statement::new(format!(
            "UPDATE webhook_endpoints SET lease_owner = $1, lease_until = $2 \
             WHERE id = (SELECT w.id FROM webhook_endpoints w \
                 WHERE w.paused_at IS NULL AND w.next_attempt_at <= $3 \
                   AND (w.lease_until IS NULL OR w.lease_until < $3) \
                   AND EXISTS (SELECT 1 FROM events e WHERE e.application_id = w.application_id \
                     AND e.position > w.delivered_through) \
                 ORDER BY w.next_attempt_at LIMIT 1) \
               AND paused_at IS NULL AND (lease_until IS NULL OR lease_until < $3) \
             RETURNING {ENDPOINT_COLUMNS}"
        )),
        renew: Statement::new(
            "UPDATE webhook_endpoints SET lease_until = $3 \
             WHERE id = $1 AND lease_owner = $2 AND paused_at IS NULL",
        ),
        delivered: Statement::new(
            "UPDATE webhook_endpoints SET delivered_through = $3, failures = 0, \
               failing_since = NULL \
             WHERE id = $1 AND lease_owner = $2 AND delivered_through < $3",
        ),
        // `$4` the failure's time, `$5` a pause reason if it failed too long.
        failed: Statement::new(
            "UPDATE webhook_endpoints SET failures = failures + 1, \
               failing_since = COALESCE(failing_since, $4), next_attempt_at = $3, \
               paused_at = CASE WHEN $5 IS NULL THEN paused_at ELSE $4 END, \
               pause_reason = COALESCE($5, pause_reason), \
               lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2",
        ),
        release: Statement::new(
            "UPDATE webhook_endpoints SET lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2",
        ),
        log_insert: Statement::new(
            "INSERT INTO webhook_deliveries (endpoint_id, attempted_at, event_id, status, \
               error, latency_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        ),
        // Everything at or below the `$2`-th newest's predecessor goes.
        log_trim: Statement::new(
            "DELETE FROM webhook_deliveries WHERE endpoint_id = $1 AND id <= \
               (SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 \
                ORDER BY id DESC LIMIT 1 OFFSET $2)",
        ),
        log_read: Statement::new(
            "SELECT d.attempted_at, d.event_id, d.status, d.error, d.latency_ms \
             FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id \
             WHERE d.endpoint_id = $1 AND w.application_id = $2 \
             ORDER BY d.id DESC LIMIT $3",
        ),
    }
}

fn record(row: EndpointRow) -> StoreResult<WebhookRecord> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("webhook endpoint {}: {what}", row.0));
    let url = WebhookUrl::parse(&row.2).map_err(|_| corrupt("bad url"))?;
    let secret = WebhookSecret::from_stored(row.3.clone()).ok_or_else(|| corrupt("bad secret"))?;
    let previous_secret = match (row.4.clone(), row.5) {
        (Some(text), Some(until)) => Some((
            WebhookSecret::from_stored(text).ok_or_else(|| corrupt("bad previous secret"))?,
            until.0,
        )),
        _ => None,
    };
    Ok(WebhookRecord {
        id: WebhookId(row.0.0),
        application_id: row.1,
        url,
        secret,
        previous_secret,
        delivered_through: row.6,
        failures: row.7,
        failing_since: row.8.map(|t| t.0),
        next_attempt_at: row.9.0,
        paused: row.10.map(|t| (t.0, row.11.clone().unwrap_or_default())),
        created_at: row.12.0,
    })
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
