//! The SQL text of the PostgreSQL engine; [`crate::store::engine`] runs it.
//! Parameters of `APPLY_*` follow [`crate::store::rows`]: `$1`–`$18` the
//! transaction, `$19`–`$24` its event, `$25`–`$27` the compare-and-set and
//! guards, `$28` the device whose OTP strike the change gives back, `$29`–`$32` the
//! transaction's binding and signed answer.
//!
//! No write takes a lock beyond the rows it changes: events are ordered by
//! position (their transaction's id, then their ordinal in it; see
//! `migrations/postgres/0006_event_positions.sql`), and readers take only
//! events of transactions older than any still running.

use crate::store::rows::{event_columns, transaction_columns};
use crate::store::sql::reserve_otp_attempt;
pub use crate::store::sql::*;

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
             SELECT $2, $19, $1, $20, $21, $22, $23, $24, $29, ",
            event_position!(),
            " FROM t"
        )
    };
}

/// Inserts a new transaction with its event.
pub const APPLY_INSERT: &[&str] = &[concat!(
    "WITH t AS (INSERT INTO transactions (",
    transaction_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $29, $30, \
       $31, $32) \
       RETURNING id) ",
    append_event!()
)];

/// Writes the changed columns if the version is still `$25`, the device
/// `$26` (if any) is the application's and unrevoked — its row locked `FOR
/// SHARE`, so a concurrent revocation either committed first and is seen,
/// or waits for this change — and the transaction has not expired at `$27`
/// (if given); appends the event.
pub const APPLY_UPDATE: &[&str] = &[concat!(
    "WITH d AS (SELECT id FROM devices WHERE id = $26 AND application_id = $2 \
             AND revoked_at IS NULL FOR SHARE), \
     t AS ( \
       UPDATE transactions SET state = $4, user_id = $5, device_id = $6, reason = $7, \
         otp_hash = $10, nonce = $11, decision_signature = $12, completed_at = $17, \
         version = $18, decision = $30, decision_reason = $31, picked_number = $32 \
       WHERE id = $1 AND application_id = $2 AND version = $25 \
         AND ($26::uuid IS NULL OR EXISTS (SELECT 1 FROM d)) \
         AND ($27::timestamptz IS NULL OR expires_at > $27) \
       RETURNING id \
     ), \
     s AS (UPDATE devices SET otp_strikes = otp_strikes - 1 \
             WHERE id = $28 AND otp_strikes > 0 AND EXISTS (SELECT 1 FROM t)) ",
    append_event!()
)];

/// Reserves an OTP lookup (see [`crate::store::sql`]'s portable form)
/// without waiting for its commit to reach the disk (a strike is a bound,
/// not an answer, and losing the last few in a crash only loosens it), and
/// reads the transaction `$5` of application `$6` in the same round trip.
/// Always one row: `allowed`, then the transaction's columns (null when
/// there is none).
pub const RESERVE_OTP_ATTEMPT: &str = concat!(
    "WITH c AS (SELECT set_config('synchronous_commit', 'off', true)), r AS (",
    reserve_otp_attempt!(),
    " AND EXISTS (SELECT 1 FROM c) RETURNING 1) \
     SELECT EXISTS (SELECT 1 FROM r) AS allowed, ",
    transaction_columns!(),
    " FROM (SELECT 1) AS one LEFT JOIN transactions ON id = $5 AND application_id = $6"
);
/// [`RESERVE_OTP_ATTEMPT`] reads the transaction too.
pub const RESERVE_FINDS: bool = true;

/// `$1` application, `$2` type, `$3` user, `$4` device, `$5` time.
pub const APPEND_DEVICE_EVENT: &str = concat!(
    "INSERT INTO events (application_id, type, user_id, device_id, occurred_at, position) \
     VALUES ($1, $2, $3, $4, $5, ",
    event_position!(),
    ")"
);

/// An application's events after a position, only from transactions older
/// than every transaction still running (so none can appear before them
/// later).
pub const EVENTS_AFTER: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE application_id = $1 AND position > $2 AND position <= $4 \
       AND xid < pg_snapshot_xmin(pg_current_snapshot()) \
     ORDER BY position LIMIT $3"
);

/// The newest committed cursor of an application, and where "from now"
/// starts: below every transaction still running.
pub const EVENT_HEAD: &str = "SELECT COALESCE(max(position), 0), \
       LEAST(COALESCE(max(position), 0), \
         (pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 20) - 1) \
     FROM events WHERE application_id = $1";

/// Whether an event of device `$1` (application `$2`) committed with a
/// position above every position this transaction will write: positions
/// follow transaction ids, not commit order, so a revocation that waited
/// for the device row behind a newer transaction would otherwise be
/// positioned before that transaction's (earlier committed) decision.
pub const OVERTAKEN_BY_DEVICE_EVENT: &str = "SELECT EXISTS (SELECT 1 FROM events \
     WHERE application_id = $2 AND position > (pg_current_xact_id()::text::bigint << 20) \
       AND device_id = $1)";

/// The user's last event flagged as a fraud report.
pub const LAST_FRAUD_REPORT: &str = "SELECT max(occurred_at) FROM events \
     WHERE application_id = $1 AND user_id = $2 AND fraud_reported";

/// The highest cursor retention removed.
pub const PURGED_THROUGH: &str = "SELECT purged_through FROM event_retention WHERE singleton";
/// Remembers the highest removed cursor.
pub const MARK_PURGED: &str = "UPDATE event_retention \
     SET purged_through = GREATEST(purged_through, $1) WHERE singleton";

/// The database's clock, now.
pub const DATABASE_TIME: &str = "SELECT clock_timestamp()";
