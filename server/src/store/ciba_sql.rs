//! The statements of the CIBA store (the same text on both engines).

use super::codec::{StoredTime, StoredUuid};
use super::queries::Statement;
use crate::domain::{ApplicationId, TransactionId};

/// The CIBA statements.
pub(crate) struct CibaQueries {
    pub upsert_client: Statement<(ApplicationId, String, Option<String>, String, StoredTime)>,
    pub find_client: Statement<(ApplicationId,)>,
    pub insert_request: Statement<RequestParams>,
    pub find_request: Statement<(Vec<u8>,)>,
    pub poll_request: Statement<(Vec<u8>, StoredTime, StoredTime)>,
    pub redeem_request: Statement<(Vec<u8>, StoredTime)>,
    pub claim_notification: Statement<(StoredUuid, StoredTime, StoredTime)>,
    pub notification_delivered: Statement<(Vec<u8>, StoredUuid, StoredTime)>,
    pub notification_failed: Statement<NotifyFailedParams>,
    pub find_key: Statement<(String,)>,
    pub insert_key: Statement<(String, String, Vec<u8>, StoredTime)>,
    pub keys: Statement<()>,
}

/// A new request's columns: hash, application, transaction, token,
/// interval, creation, and for a notified client the `auth_req_id` kept
/// until it is notified and when the notification is first due.
pub(crate) type RequestParams = (
    Vec<u8>,
    ApplicationId,
    TransactionId,
    Option<String>,
    i64,
    StoredTime,
    Option<String>,
    Option<StoredTime>,
);

/// A failed notification: hash, lease owner, next attempt, error, and
/// whether delivery is given up (the kept `auth_req_id` cleared).
pub(crate) type NotifyFailedParams = (Vec<u8>, StoredUuid, StoredTime, String, bool);

const REQUEST_COLUMNS: &str = "id_hash, application_id, transaction_id, notification_token, \
     interval_seconds, created_at, last_poll_at, redeemed_at, notified_at, notify_attempts";

/// [`REQUEST_COLUMNS`] and the kept `auth_req_id`, for the notifier.
const NOTIFY_COLUMNS: &str = "id_hash, application_id, transaction_id, notification_token, \
     interval_seconds, created_at, last_poll_at, redeemed_at, notified_at, notify_attempts, \
     notify_auth_req_id";

/// The statements, one text for both engines.
pub(crate) fn queries() -> CibaQueries {
    CibaQueries {
        upsert_client: Statement::new(
            "INSERT INTO ciba_clients (application_id, delivery_mode, notification_endpoint, \
             id_token_alg, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (application_id) DO UPDATE SET delivery_mode = excluded.delivery_mode, \
             notification_endpoint = excluded.notification_endpoint, \
             id_token_alg = excluded.id_token_alg, updated_at = excluded.updated_at",
        ),
        find_client: Statement::new(
            "SELECT application_id, delivery_mode, notification_endpoint, id_token_alg \
             FROM ciba_clients WHERE application_id = $1",
        ),
        insert_request: Statement::new(
            "INSERT INTO ciba_requests (id_hash, application_id, transaction_id, \
             notification_token, interval_seconds, created_at, notify_auth_req_id, \
             notify_due_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        ),
        find_request: Statement::new(format!(
            "SELECT {REQUEST_COLUMNS} FROM ciba_requests WHERE id_hash = $1"
        )),
        // The poll's write, guarded by the domain's threshold: a poll too
        // soon after the last one changes nothing.
        poll_request: Statement::new(
            "UPDATE ciba_requests SET last_poll_at = $2 WHERE id_hash = $1 \
             AND (last_poll_at IS NULL OR last_poll_at <= $3)",
        ),
        redeem_request: Statement::new(
            "UPDATE ciba_requests SET redeemed_at = $2 WHERE id_hash = $1 AND redeemed_at IS NULL",
        ),
        // A due notification whose transaction has ended, leased to one
        // replica: the inner pick may race another replica's; the outer
        // conditions are checked again on the row as it is when it is
        // written, so only one replica takes it.
        claim_notification: Statement::new(format!(
            "UPDATE ciba_requests SET notify_lease_owner = $1, notify_lease_until = $2 \
             WHERE id_hash = (SELECT r.id_hash FROM ciba_requests r \
                 JOIN transactions t ON t.id = r.transaction_id \
                 WHERE r.notify_auth_req_id IS NOT NULL AND r.notify_due_at <= $3 \
                   AND (r.notify_lease_until IS NULL OR r.notify_lease_until < $3) \
                   AND t.state NOT IN ('PENDING', 'SCANNED') \
                 ORDER BY r.notify_due_at LIMIT 1) \
               AND notify_auth_req_id IS NOT NULL \
               AND (notify_lease_until IS NULL OR notify_lease_until < $3) \
             RETURNING {NOTIFY_COLUMNS}"
        )),
        // Acknowledged: the kept id is cleared, so it lives no longer than
        // its purpose.
        notification_delivered: Statement::new(
            "UPDATE ciba_requests SET notified_at = $3, notify_auth_req_id = NULL, \
               notify_attempts = notify_attempts + 1, notify_error = NULL, \
               notify_lease_owner = NULL, notify_lease_until = NULL \
             WHERE id_hash = $1 AND notify_lease_owner = $2",
        ),
        notification_failed: Statement::new(
            "UPDATE ciba_requests SET notify_attempts = notify_attempts + 1, notify_due_at = $3, \
               notify_error = $4, notify_lease_owner = NULL, notify_lease_until = NULL, \
               notify_auth_req_id = CASE WHEN $5 THEN NULL ELSE notify_auth_req_id END \
             WHERE id_hash = $1 AND notify_lease_owner = $2",
        ),
        find_key: Statement::new(
            "SELECT alg, kid, private_der, created_at FROM oidc_keys WHERE alg = $1",
        ),
        insert_key: Statement::new(
            "INSERT INTO oidc_keys (alg, kid, private_der, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        ),
        keys: Statement::new(
            "SELECT alg, kid, private_der, created_at FROM oidc_keys ORDER BY alg",
        ),
    }
}

impl CibaQueries {
    /// Every statement with its binder's arity, for the arity tests.
    #[cfg(test)]
    pub(crate) fn named(&self) -> Vec<(&'static str, usize, &str)> {
        use super::params::{Bind, Shape};
        fn one<'a, P: Shape>(
            name: &'static str,
            s: &'a Statement<P>,
        ) -> (&'static str, usize, &'a str) {
            (name, <P::Of<'static> as Bind>::ARITY, s.sql())
        }
        let Self {
            upsert_client,
            find_client,
            insert_request,
            find_request,
            poll_request,
            redeem_request,
            claim_notification,
            notification_delivered,
            notification_failed,
            find_key,
            insert_key,
            keys,
        } = self;
        vec![
            one("ciba upsert_client", upsert_client),
            one("ciba find_client", find_client),
            one("ciba insert_request", insert_request),
            one("ciba find_request", find_request),
            one("ciba poll_request", poll_request),
            one("ciba redeem_request", redeem_request),
            one("ciba claim_notification", claim_notification),
            one("ciba notification_delivered", notification_delivered),
            one("ciba notification_failed", notification_failed),
            one("ciba find_key", find_key),
            one("ciba insert_key", insert_key),
            one("ciba keys", keys),
        ]
    }
}
