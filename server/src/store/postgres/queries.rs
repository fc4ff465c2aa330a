//! The statements PostgreSQL runs in its own dialect. A change's write is
//! bound by [`crate::store::params::ChangeParams`] (`$1`–`$22` the
//! transaction, `$23`–`$28` its event, `$29`–`$33` the compare-and-set and
//! guards) and is one statement: the compare-and-set, its guards and the
//! event.
//!
//! No write takes a lock beyond the rows it changes: events are ordered by
//! position (their transaction's id, then their ordinal in it; see
//! `migrations/postgres/0006_event_positions.sql`), and readers take only
//! events of transactions older than any still running.

use crate::store::queries::{DialectQueries, Reserve, Statement};
use crate::store::rows::{event_columns, transaction_columns};
use crate::store::sql::{otp_lookup_allowed, reserve_otp_attempt};

/// The position of the next event this database transaction appends: its
/// transaction id shifted left 20 bits, plus a per-transaction ordinal kept
/// in a transaction-local setting.
macro_rules! event_position {
    () => {
        "((pg_current_xact_id()::text::bigint << 20) + set_config('assent.event_ordinal', \
           (COALESCE(NULLIF(current_setting('assent.event_ordinal', true), ''), '0')::int + 1)\
           ::text, true)::bigint)"
    };
}

/// Appends the change's event for the row `t` it wrote.
macro_rules! append_event {
    () => {
        concat!(
            "INSERT INTO events (application_id, type, transaction_id, user_id, device_id, \
               reason, fraud_reported, occurred_at, binding, position) \
             SELECT $2, $23, $1, $24, $25, $26, $27, $28, $19, ",
            event_position!(),
            " FROM t"
        )
    };
}

/// PostgreSQL's statements.
pub(super) fn dialect() -> DialectQueries {
    DialectQueries {
        // Inserts a new transaction with its event.
        insert_transaction: Statement::new(concat!(
            "WITH t AS (INSERT INTO transactions (",
            transaction_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
               $17, $18, $19, $20, $21, $22) \
               RETURNING id) ",
            append_event!()
        )),
        // Writes the changed columns if the version is still `$29`, the
        // device `$30` (if any) is the application's, unrevoked and, when
        // `$32` and `$33` are given, not cooling off from wrong OTPs — its row
        // locked `FOR NO KEY UPDATE`, so a concurrent revocation either
        // committed first and is seen, or waits for this change — and the
        // transaction has not expired at `$31` (if given); appends the
        // event. The device row is locked first and
        // exclusively: under `FOR SHARE`, two changes of one device on one
        // transaction (one OTP handed in twice at once) each held the share
        // lock, one waited for the other's transaction row, and the other's
        // strike give-back (scans gave strikes back then) waited for the
        // first's share lock — a deadlock (races.rs case_2, 1 in 200
        // rounds). Changes of one device queue on its row, and the second
        // sees the first's version.
        update_transaction: Statement::new(concat!(
            "WITH d AS (SELECT id FROM devices WHERE id = $30 AND application_id = $2 \
                     AND revoked_at IS NULL AND ($32::int8 IS NULL OR ",
            otp_lookup_allowed!("$32", "$33::timestamptz"),
            ") FOR NO KEY UPDATE), \
             t AS ( \
               UPDATE transactions SET state = $4, user_id = $5, device_id = $6, reason = $7, \
                 otp_hash = $10, nonce = $11, decision_signature = $12, completed_at = $17, \
                 version = $18, decision = $20, decision_reason = $21, picked_number = $22 \
               WHERE id = $1 AND application_id = $2 AND version = $29 \
                 AND ($30::uuid IS NULL OR EXISTS (SELECT 1 FROM d)) \
                 AND ($31::timestamptz IS NULL OR expires_at > $31) \
               RETURNING id \
             ) ",
            append_event!()
        )),
        append_event: None,
        // Reserves an OTP lookup (see `store::sql`'s portable form) without
        // waiting for its commit to reach the disk (a strike is a bound, not
        // an answer, and losing the last few in a crash only loosens it),
        // and reads the transaction `$5` of application `$6` in the same
        // round trip. Always one row: `allowed`, then the transaction's
        // columns (null when there is none).
        reserve_otp_attempt: Reserve::AndFind(Statement::new(concat!(
            "WITH c AS (SELECT set_config('synchronous_commit', 'off', true)), r AS (",
            reserve_otp_attempt!(),
            " AND EXISTS (SELECT 1 FROM c) RETURNING 1) \
             SELECT EXISTS (SELECT 1 FROM r) AS allowed, ",
            transaction_columns!(),
            " FROM (SELECT 1) AS one LEFT JOIN transactions ON id = $5 AND application_id = $6"
        ))),
        // `$1` application, `$2` type, `$3` user, `$4` device, `$5` time.
        append_device_event: Statement::new(concat!(
            "INSERT INTO events (application_id, type, user_id, device_id, occurred_at, \
               position) VALUES ($1, $2, $3, $4, $5, ",
            event_position!(),
            ")"
        )),
        // Only from transactions older than every transaction still running
        // (so none can appear before them later).
        events_after: Statement::new(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE application_id = $1 AND position > $2 AND position <= $4 \
               AND xid < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY position LIMIT $3"
        )),
        // The same up to the newest committed position, read in the same
        // snapshot, with it on every row.
        events_to_head: Statement::new(concat!(
            "WITH h AS (SELECT max(position) AS head FROM events WHERE application_id = $1) \
             SELECT ",
            event_columns!(),
            ", h.head FROM h JOIN events ON application_id = $1 AND position > $2 \
               AND position <= h.head AND xid < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY position LIMIT $3"
        )),
        // "From now" starts below every transaction still running.
        event_head: Statement::new(
            "SELECT COALESCE(max(position), 0), \
               LEAST(COALESCE(max(position), 0), \
                 (pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20) - 1) \
             FROM events WHERE application_id = $1",
        ),
        // Whether an event of device `$1` (application `$2`) committed with
        // a position above every position this transaction will write:
        // positions follow transaction ids, not commit order, so a
        // revocation that waited for the device row behind a newer
        // transaction would otherwise be positioned before that
        // transaction's (earlier committed) decision.
        overtaken_by_device_event: Some(Statement::new(
            "SELECT EXISTS (SELECT 1 FROM events \
             WHERE application_id = $2 AND position > (pg_current_xact_id()::text::bigint << 20) \
               AND device_id = $1)",
        )),
        last_fraud_report: Statement::new(
            "SELECT max(occurred_at) FROM events \
             WHERE application_id = $1 AND user_id = $2 AND fraud_reported",
        ),
        purged_through: Statement::new(
            "SELECT purged_through FROM event_retention WHERE singleton",
        ),
        mark_purged: Statement::new(
            "UPDATE event_retention SET purged_through = GREATEST(purged_through, $1) \
             WHERE singleton",
        ),
        database_time: Statement::new("SELECT clock_timestamp()"),
    }
}
