//! The statements SQLite runs in its own dialect. A change is written by
//! up to three statements in one write transaction, all bound by
//! [`crate::store::params::ChangeParams`] (`$1`–`$22` the transaction,
//! `$23`–`$28` its event, `$29`–`$33` the compare-and-set and guards). One
//! writer connection
//! serialises every write, so events commit in cursor order.

use crate::store::queries::{DialectQueries, Reserve, Statement};
use crate::store::rows::{event_columns, transaction_columns};
use crate::store::sql::{otp_lookup_allowed, reserve_otp_attempt};

/// SQLite's statements.
pub(in crate::store) fn dialect() -> DialectQueries {
    DialectQueries {
        insert_transaction: Statement::new(concat!(
            "INSERT INTO transactions (",
            transaction_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18, $19, $20, $21, $22)"
        )),
        // Writes the changed columns if the version is still `$29`, the
        // device `$30` (if any) is the application's, unrevoked and, when
        // `$32` and `$33` are given, not cooling off from wrong OTPs, and the
        // transaction has not expired at `$31` (if given).
        update_transaction: Statement::new(concat!(
            "UPDATE transactions SET state = $4, user_id = $5, device_id = $6, reason = $7, \
               otp_hash = $10, nonce = $11, decision_signature = $12, completed_at = $17, \
               version = $18, decision = $20, decision_reason = $21, picked_number = $22 \
             WHERE id = $1 AND application_id = $2 AND version = $29 \
               AND ($30 IS NULL OR EXISTS (SELECT 1 FROM devices WHERE id = $30 \
                 AND application_id = $2 AND revoked_at IS NULL AND ($32 IS NULL OR ",
            otp_lookup_allowed!("$32", "$33"),
            "))) \
               AND ($31 IS NULL OR expires_at > $31)"
        )),
        append_event: Some(Statement::new(
            "INSERT INTO events (application_id, type, transaction_id, user_id, device_id, \
               reason, fraud_reported, occurred_at, binding) \
             VALUES ($2, $23, $1, $24, $25, $26, $27, $28, $19)",
        )),
        // Only reserves; the transaction is read after it.
        reserve_otp_attempt: Reserve::Alone(Statement::new(reserve_otp_attempt!())),
        // `$1` application, `$2` type, `$3` user, `$4` device, `$5` time.
        append_device_event: Statement::new(
            "INSERT INTO events (application_id, type, user_id, device_id, occurred_at) \
             VALUES ($1, $2, $3, $4, $5)",
        ),
        // The cursor: one writer commits events in order.
        events_after: Statement::new(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE application_id = $1 AND position > $2 AND position <= $4 \
             ORDER BY position LIMIT $3"
        )),
        // The same up to the newest committed cursor, with it on every row.
        events_to_head: Statement::new(concat!(
            "WITH h AS (SELECT max(position) AS head FROM events WHERE application_id = $1) \
             SELECT ",
            event_columns!(),
            ", h.head FROM h JOIN events ON application_id = $1 AND position > $2 \
               AND position <= h.head ORDER BY position LIMIT $3"
        )),
        // Twice the newest committed cursor: "from now" starts right there.
        event_head: Statement::new(
            "SELECT COALESCE(max(position), 0), COALESCE(max(position), 0) \
             FROM events WHERE application_id = $1",
        ),
        // One writer commits in cursor order: a revocation is never overtaken.
        overtaken_by_device_event: None,
        last_fraud_report: Statement::new(
            "SELECT max(occurred_at) FROM events \
             WHERE application_id = $1 AND user_id = $2 AND fraud_reported = 1",
        ),
        purged_through: Statement::new(
            "SELECT purged_through FROM event_retention WHERE singleton = 1",
        ),
        mark_purged: Statement::new(
            "UPDATE event_retention SET purged_through = max(purged_through, $1) \
             WHERE singleton = 1",
        ),
        database_time: Statement::new(
            "SELECT CAST(round((julianday('now') - 2440587.5) * 86400000000.0) AS INTEGER)",
        ),
    }
}
