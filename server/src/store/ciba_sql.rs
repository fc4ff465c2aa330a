//! The statements of the CIBA store (the same text on both engines).

use super::codec::StoredTime;
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
    pub requests_of_transaction: Statement<(TransactionId,)>,
    pub mark_notified: Statement<(Vec<u8>, StoredTime)>,
    pub count_notify_attempt: Statement<(Vec<u8>,)>,
    pub find_key: Statement<(String,)>,
    pub insert_key: Statement<(String, String, Vec<u8>, StoredTime)>,
    pub keys: Statement<()>,
}

/// A new request's columns: hash, application, transaction, token,
/// interval, creation.
pub(crate) type RequestParams = (
    Vec<u8>,
    ApplicationId,
    TransactionId,
    Option<String>,
    i64,
    StoredTime,
);

const REQUEST_COLUMNS: &str = "id_hash, application_id, transaction_id, notification_token, \
     interval_seconds, created_at, last_poll_at, redeemed_at, notified_at, notify_attempts";

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
             notification_token, interval_seconds, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
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
        requests_of_transaction: Statement::new(format!(
            "SELECT {REQUEST_COLUMNS} FROM ciba_requests WHERE transaction_id = $1"
        )),
        mark_notified: Statement::new(
            "UPDATE ciba_requests SET notified_at = $2 WHERE id_hash = $1 AND notified_at IS NULL",
        ),
        count_notify_attempt: Statement::new(
            "UPDATE ciba_requests SET notify_attempts = notify_attempts + 1 WHERE id_hash = $1",
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
            requests_of_transaction,
            mark_notified,
            count_notify_attempt,
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
            one("ciba requests_of_transaction", requests_of_transaction),
            one("ciba mark_notified", mark_notified),
            one("ciba count_notify_attempt", count_notify_attempt),
            one("ciba find_key", find_key),
            one("ciba insert_key", insert_key),
            one("ciba keys", keys),
        ]
    }
}
