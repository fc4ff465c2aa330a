//! The statements of the webhook store (the same text on both engines),
//! the endpoint row and how it becomes a record.

use super::codec::{StoredTime, StoredUuid};
use super::queries::Statement;
use super::{StoreError, StoreResult};
use crate::domain::ApplicationId;
use crate::domain::webhook::{WebhookId, WebhookSecret, WebhookUrl};

use super::webhooks::WebhookRecord;

/// The endpoint columns every read returns, in [`EndpointRow`] order.
pub(super) const ENDPOINT_COLUMNS: &str = "id, application_id, url, secret, previous_secret, previous_until, \
     delivered_through, failures, failing_since, next_attempt_at, paused_at, pause_reason, \
     created_at";

/// An endpoint as stored.
pub(super) type EndpointRow = (
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
pub(super) type AttemptRow = (StoredTime, String, Option<i64>, Option<String>, i64);

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

pub(super) fn record(row: EndpointRow) -> StoreResult<WebhookRecord> {
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
