//! The SQL text of the SQLite engine; [`crate::store::engine`] runs it.
//! Parameters of `APPLY_*` follow [`crate::store::rows`]: `$1`–`$18` the
//! transaction, `$19`–`$24` its event, `$25`–`$27` the compare-and-set and
//! guards, `$28` the device whose OTP strike the change gives back, `$29`–`$32` the
//! transaction's binding and signed answer. One
//! writer connection serialises every write.

use crate::store::rows::{event_columns, transaction_columns};
use crate::store::sql::reserve_otp_attempt;
pub use crate::store::sql::*;

/// Reserves an OTP lookup (see [`crate::store::sql`]).
pub const RESERVE_OTP_ATTEMPT: &str = reserve_otp_attempt!();
/// [`RESERVE_OTP_ATTEMPT`] only reserves; the transaction is read after it.
pub const RESERVE_FINDS: bool = false;

/// `$1` application, `$2` type, `$3` user, `$4` device, `$5` time.
pub const APPEND_DEVICE_EVENT: &str = "INSERT INTO events (application_id, type, user_id, \
     device_id, occurred_at) VALUES ($1, $2, $3, $4, $5)";

/// An application's events after a position (the cursor: one writer
/// commits them in order).
pub const EVENTS_AFTER: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE application_id = $1 AND position > $2 AND position <= $4 \
     ORDER BY position LIMIT $3"
);

/// Appends the change's event.
macro_rules! append_event {
    () => {
        "INSERT INTO events (application_id, type, transaction_id, user_id, device_id, reason, \
           fraud_reported, occurred_at, binding) VALUES ($2, $19, $1, $20, $21, $22, $23, $24, \
           $29)"
    };
}

/// Inserts a new transaction, then its event, in one write transaction.
pub const APPLY_INSERT: &[&str] = &[
    concat!(
        "INSERT INTO transactions (",
        transaction_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18, $29, $30, $31, $32)"
    ),
    append_event!(),
];

/// Writes the changed columns if the version is still `$25`, the device
/// `$26` (if any) is the application's and unrevoked, and the transaction
/// has not expired at `$27` (if given); then appends the event, in one
/// write transaction.
pub const APPLY_UPDATE: &[&str] = &[
    "UPDATE transactions SET state = $4, user_id = $5, device_id = $6, reason = $7, \
       otp_hash = $10, nonce = $11, decision_signature = $12, completed_at = $17, version = $18, \
       decision = $30, decision_reason = $31, picked_number = $32 \
     WHERE id = $1 AND application_id = $2 AND version = $25 \
       AND ($26 IS NULL OR EXISTS (SELECT 1 FROM devices WHERE id = $26 \
         AND application_id = $2 AND revoked_at IS NULL)) \
       AND ($27 IS NULL OR expires_at > $27)",
    append_event!(),
    "UPDATE devices SET otp_strikes = otp_strikes - 1 WHERE id = $28 AND otp_strikes > 0",
];

/// The newest committed cursor of an application, twice (one writer
/// commits in cursor order, so "from now" starts right there).
pub const EVENT_HEAD: &str = "SELECT COALESCE(max(position), 0), COALESCE(max(position), 0) \
     FROM events WHERE application_id = $1";

/// One writer commits in cursor order: a revocation is never overtaken.
pub const OVERTAKEN_BY_DEVICE_EVENT: &str = "SELECT $1 IS NULL AND $2 IS NULL";

/// The user's last event flagged as a fraud report.
pub const LAST_FRAUD_REPORT: &str = "SELECT max(occurred_at) FROM events \
     WHERE application_id = $1 AND user_id = $2 AND fraud_reported = 1";

/// The highest cursor retention removed.
pub const PURGED_THROUGH: &str = "SELECT purged_through FROM event_retention WHERE singleton = 1";
/// Remembers the highest removed cursor.
pub const MARK_PURGED: &str = "UPDATE event_retention \
     SET purged_through = max(purged_through, $1) WHERE singleton = 1";

/// The database's clock, now.
pub const DATABASE_TIME: &str =
    "SELECT CAST(round((julianday('now') - 2440587.5) * 86400000000.0) AS INTEGER)";
