//! The SQL text of the SQLite engine; [`crate::store::engine`] runs it.
//! Parameters of `APPLY_*` follow [`crate::store::rows`]: `$1`–`$18` the
//! transaction, `$19`–`$24` its event, `$25`–`$27` the compare-and-set and
//! guards (`$28`, the lock key, is not used: one writer connection
//! serialises every write).

use crate::store::rows::{device_columns, event_columns, transaction_columns};

/// SQLite needs no application lock: writes are serialised.
pub const LOCK_APPLICATION: Option<&str> = None;

/// Appends the change's event.
macro_rules! append_event {
    () => {
        "INSERT INTO events (application_id, type, transaction_id, user_id, device_id, reason, \
           fraud_reported, occurred_at) VALUES ($2, $19, $1, $20, $21, $22, $23, $24)"
    };
}

/// Inserts a new transaction, then its event, in one write transaction.
pub const APPLY_INSERT: &[&str] = &[
    concat!(
        "INSERT INTO transactions (",
        transaction_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         $18)"
    ),
    append_event!(),
];

/// Writes the changed columns if the version is still `$25`, the device
/// `$26` (if any) is the application's and unrevoked, and the transaction
/// has not expired at `$27` (if given); then appends the event, in one
/// write transaction.
pub const APPLY_UPDATE: &[&str] = &[
    "UPDATE transactions SET state = $4, user_id = $5, device_id = $6, reason = $7, \
       otp_hash = $10, nonce = $11, decision_signature = $12, completed_at = $17, version = $18 \
     WHERE id = $1 AND application_id = $2 AND version = $25 \
       AND ($26 IS NULL OR EXISTS (SELECT 1 FROM devices WHERE id = $26 \
         AND application_id = $2 AND revoked_at IS NULL)) \
       AND ($27 IS NULL OR expires_at > $27)",
    append_event!(),
];

/// `$1` application, `$2` type, `$3` user, `$4` device, `$5` time.
pub const APPEND_DEVICE_EVENT: &str = "INSERT INTO events (application_id, type, user_id, \
     device_id, occurred_at) VALUES ($1, $2, $3, $4, $5)";

/// A new application.
pub const INSERT_APPLICATION: &str =
    "INSERT INTO applications (id, name, created_at) VALUES ($1, $2, $3)";
/// A new API key.
pub const INSERT_API_KEY: &str = "INSERT INTO api_keys (id, application_id, secret_hash, \
     created_at) VALUES ($1, $2, $3, $4)";
/// Every application.
pub const LIST_APPLICATIONS: &str =
    "SELECT id, name, created_at FROM applications ORDER BY created_at, id";
/// An unrevoked API key with its application.
pub const FIND_API_KEY: &str = "SELECT k.secret_hash, a.id, a.name, a.created_at FROM api_keys k \
     JOIN applications a ON a.id = k.application_id WHERE k.id = $1 AND k.revoked_at IS NULL";

/// A new enrollment code.
pub const INSERT_ENROLLMENT: &str = "INSERT INTO enrollments (id, application_id, user_id, \
     secret_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)";
/// Uses up an enrollment code once.
pub const CONSUME_ENROLLMENT: &str = "UPDATE enrollments SET consumed_at = $2 \
     WHERE id = $1 AND consumed_at IS NULL \
     RETURNING application_id, user_id, secret_hash, expires_at";
/// A new device.
pub const INSERT_DEVICE: &str = "INSERT INTO devices (id, application_id, user_id, name, \
     public_key, created_at) VALUES ($1, $2, $3, $4, $5, $6)";
/// One device.
pub const FIND_DEVICE: &str = concat!(
    "SELECT ",
    device_columns!(),
    " FROM devices d JOIN applications a ON a.id = d.application_id WHERE d.id = $1"
);
/// An application's devices, optionally of one user.
pub const LIST_DEVICES: &str = concat!(
    "SELECT ",
    device_columns!(),
    " FROM devices d JOIN applications a ON a.id = d.application_id \
     WHERE d.application_id = $1 AND ($2 IS NULL OR d.user_id = $2) \
     ORDER BY d.created_at, d.id"
);
/// Records that a device is connected.
pub const TOUCH_DEVICE: &str = "UPDATE devices SET last_seen_at = $2 WHERE id = $1";
/// Open transactions bound to a device.
pub const HELD_BY: &str = concat!(
    "SELECT ",
    transaction_columns!(),
    " FROM transactions WHERE device_id = $1 AND state IN ('PENDING', 'SCANNED') ORDER BY id"
);
/// Their ids, in id order.
pub const HELD_IDS: &str = "SELECT id FROM transactions WHERE device_id = $1 AND state IN ('PENDING', 'SCANNED') \
     ORDER BY id";
/// Revokes a device once.
pub const REVOKE_DEVICE: &str = "UPDATE devices SET revoked_at = $3 \
     WHERE id = $1 AND application_id = $2 AND revoked_at IS NULL";
/// One wrong OTP.
pub const RECORD_OTP_FAILURE: &str =
    "INSERT INTO otp_failures (device_id, failed_at) VALUES ($1, $2)";
/// Wrong OTPs since a time.
pub const COUNT_OTP_FAILURES: &str =
    "SELECT count(*) FROM otp_failures WHERE device_id = $1 AND failed_at > $2";

/// One transaction of an application.
pub const FIND_TRANSACTION: &str = concat!(
    "SELECT ",
    transaction_columns!(),
    " FROM transactions WHERE id = $1 AND application_id = $2"
);
/// Open transactions past their expiry (the partial index's predicate).
pub const OVERDUE_TRANSACTIONS: &str = concat!(
    "SELECT ",
    transaction_columns!(),
    " FROM transactions WHERE state IN ('PENDING', 'SCANNED') AND expires_at <= $1 \
     ORDER BY expires_at LIMIT $2"
);
/// Scanned transactions of a device and pending pushes to its user.
pub const OPEN_CONFIRMATIONS: &str = concat!(
    "SELECT ",
    transaction_columns!(),
    " FROM transactions WHERE (device_id = $1 AND state = 'SCANNED') \
       OR (kind = 'PUSH' AND state = 'PENDING' AND application_id = $2 AND user_id = $3) \
     ORDER BY created_at"
);
/// A user's pending push.
pub const OPEN_PUSH: &str = concat!(
    "SELECT ",
    transaction_columns!(),
    " FROM transactions WHERE application_id = $1 AND user_id = $2 \
       AND kind = 'PUSH' AND state = 'PENDING'"
);
/// Pushes since a time and since the user's last accepted one.
pub const COUNT_UNANSWERED_PUSHES: &str = "SELECT count(*) FROM transactions t \
     WHERE t.application_id = $1 AND t.user_id = $2 AND t.kind = 'PUSH' AND t.created_at > $3 \
       AND t.created_at > COALESCE((SELECT max(a.completed_at) FROM transactions a \
         WHERE a.application_id = $1 AND a.user_id = $2 AND a.kind = 'PUSH' \
         AND a.state = 'ACCEPTED'), -9223372036854775808)";
/// The user's last event flagged as a fraud report.
pub const LAST_FRAUD_REPORT: &str = "SELECT max(occurred_at) FROM events \
     WHERE application_id = $1 AND user_id = $2 AND fraud_reported = 1";

/// An application's events after a cursor.
pub const EVENTS_AFTER: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE application_id = $1 AND cursor > $2 ORDER BY cursor LIMIT $3"
);
/// The highest cursor retention removed.
pub const PURGED_THROUGH: &str = "SELECT purged_through FROM event_retention WHERE singleton = 1";
/// Removes old events, returning their cursors.
pub const PURGE_EVENTS: &str = "DELETE FROM events WHERE occurred_at < $1 RETURNING cursor";
/// Remembers the highest removed cursor.
pub const MARK_PURGED: &str = "UPDATE event_retention \
     SET purged_through = max(purged_through, $1) WHERE singleton = 1";
/// Removes stale OTP failures.
pub const PURGE_OTP_FAILURES: &str = "DELETE FROM otp_failures WHERE failed_at < $1";
