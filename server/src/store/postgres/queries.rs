//! The SQL text of the PostgreSQL engine; [`crate::store::engine`] runs it.
//! Parameters of `APPLY_*` follow [`crate::store::rows`]: `$1`–`$18` the
//! transaction, `$19`–`$24` its event, `$25`–`$27` the compare-and-set and
//! guards, `$28` the application's lock key.

use crate::store::rows::transaction_columns;
pub use crate::store::sql::*;

/// Serialises the application's event appends until the transaction ends,
/// so events commit in cursor order (see the engine's module doc).
pub const LOCK_APPLICATION: Option<&str> = Some("SELECT pg_advisory_xact_lock($1)");

/// Appends the change's event for the row `t` it wrote.
macro_rules! append_event {
    () => {
        "INSERT INTO events (application_id, type, transaction_id, user_id, device_id, reason, \
           fraud_reported, occurred_at) \
         SELECT $2, $19, $1, $20, $21, $22, $23, $24 FROM t"
    };
}

/// Inserts a new transaction with its event, under the application lock.
pub const APPLY_INSERT: &[&str] = &[concat!(
    "WITH l AS (SELECT pg_advisory_xact_lock($28)), t AS ( \
       INSERT INTO transactions (",
    transaction_columns!(),
    ") SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18 \
       WHERE EXISTS (SELECT 1 FROM l) RETURNING id \
     ) ",
    append_event!()
)];

/// Writes the changed columns if the version is still `$25`, the device
/// `$26` (if any) is the application's and unrevoked — its row locked `FOR
/// SHARE` after the application lock, so a concurrent revocation either
/// committed first and is seen, or waits for this change — and the
/// transaction has not expired at `$27` (if given); appends the event.
pub const APPLY_UPDATE: &[&str] = &[concat!(
    "WITH l AS (SELECT pg_advisory_xact_lock($28)), \
     d AS (SELECT id FROM devices WHERE id = $26 AND application_id = $2 \
             AND revoked_at IS NULL AND EXISTS (SELECT 1 FROM l) FOR SHARE), \
     t AS ( \
       UPDATE transactions SET state = $4, user_id = $5, device_id = $6, reason = $7, \
         otp_hash = $10, nonce = $11, decision_signature = $12, completed_at = $17, \
         version = $18 \
       WHERE id = $1 AND application_id = $2 AND version = $25 \
         AND EXISTS (SELECT 1 FROM l) \
         AND ($26::uuid IS NULL OR EXISTS (SELECT 1 FROM d)) \
         AND ($27::timestamptz IS NULL OR expires_at > $27) \
       RETURNING id \
     ) ",
    append_event!()
)];

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
