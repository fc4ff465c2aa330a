//! SQL text both engines run unchanged; each engine's `queries` module
//! re-exports it beside its own dialect's statements.

use crate::store::rows::{device_columns, event_columns, transaction_columns};

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

/// Adds a key to an existing application.
pub const ADD_API_KEY: &str = "INSERT INTO api_keys (id, application_id, secret_hash, \
     created_at) SELECT $1, id, $3, $4 FROM applications WHERE id = $2";
/// An application's keys.
pub const LIST_API_KEYS: &str = "SELECT id, created_at, revoked_at FROM api_keys \
     WHERE application_id = $1 ORDER BY created_at, id";
/// Revokes a key once.
pub const REVOKE_API_KEY: &str = "UPDATE api_keys SET revoked_at = $3 \
     WHERE id = $2 AND application_id = $1 AND revoked_at IS NULL";
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

/// Reserves an OTP lookup of device `$1`: a window opened at or before `$3`
/// starts anew at `$4`; otherwise a strike is added while fewer than `$2`.
/// One row, one statement: atomic under the row lock on both engines.
macro_rules! reserve_otp_attempt {
    () => {
        "UPDATE devices SET \
       otp_strikes = CASE WHEN otp_window_start IS NULL OR otp_window_start <= $3 \
         THEN 1 ELSE otp_strikes + 1 END, \
       otp_window_start = CASE WHEN otp_window_start IS NULL OR otp_window_start <= $3 \
         THEN $4 ELSE otp_window_start END \
     WHERE id = $1 \
       AND (otp_window_start IS NULL OR otp_window_start <= $3 OR otp_strikes < $2)"
    };
}
pub(crate) use reserve_otp_attempt;

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
       AND NOT EXISTS (SELECT 1 FROM transactions a WHERE a.application_id = $1 \
         AND a.user_id = $2 AND a.kind = 'PUSH' AND a.state = 'ACCEPTED' \
         AND a.completed_at >= t.created_at)";

/// The highest position among an application's committed events.
pub const EVENTS_HEAD: &str = "SELECT max(position) FROM events WHERE application_id = $1";
/// Removes old events, returning their positions.
pub const PURGE_EVENTS: &str = "DELETE FROM events WHERE occurred_at < $1 RETURNING position";

/// An application's latest event of one transaction.
pub const LAST_EVENT_OF: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE transaction_id = $2 AND application_id = $1 \
     ORDER BY position DESC LIMIT 1"
);

/// The current server key.
pub const CURRENT_SERVER_KEY: &str = "SELECT id, public_key, secret_key, created_at, retired_at \
     FROM server_keys WHERE retired_at IS NULL";
/// Every server key, newest first.
pub const SERVER_KEYS: &str = "SELECT id, public_key, secret_key, created_at, retired_at \
     FROM server_keys ORDER BY created_at DESC, id";
/// Retires the current server key.
pub const RETIRE_SERVER_KEY: &str =
    "UPDATE server_keys SET retired_at = $1 WHERE retired_at IS NULL";
/// A new current server key, unless one is current.
pub const INSERT_SERVER_KEY: &str = "INSERT INTO server_keys (id, public_key, secret_key, \
     created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";

/// The checkpoint columns.
macro_rules! checkpoint_columns {
    () => {
        "application_id, seq, from_cursor, through_cursor, entries, prev_hash, hash, key_id, \
         signature, created_at"
    };
}

/// An application's newest checkpoint.
pub const LAST_CHECKPOINT: &str = concat!(
    "SELECT ",
    checkpoint_columns!(),
    " FROM checkpoints WHERE application_id = $1 ORDER BY seq DESC LIMIT 1"
);
/// An application's checkpoints in chain order.
pub const CHECKPOINTS: &str = concat!(
    "SELECT ",
    checkpoint_columns!(),
    " FROM checkpoints WHERE application_id = $1 ORDER BY seq"
);
/// A new checkpoint unless its place in the chain is taken.
pub const INSERT_CHECKPOINT: &str = concat!(
    "INSERT INTO checkpoints (",
    checkpoint_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING"
);
/// Stored events of an application in a cursor range, as they are.
pub const STORED_EVENTS: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE application_id = $1 AND position > $2 AND position <= $3 \
     ORDER BY position"
);

/// Extends (or takes) a replica's lease.
pub const RENEW_REPLICA: &str = "INSERT INTO replicas (id, expires_at) VALUES ($1, $2) \
     ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at";
/// A live stream.
pub const STREAM_OPENED: &str = "INSERT INTO presence (stream, device_id, replica, opened_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
/// A stream ended.
pub const STREAM_CLOSED: &str = "DELETE FROM presence WHERE stream = $1";
/// A replica's streams.
pub const REPLICA_STREAMS_GONE: &str = "DELETE FROM presence WHERE replica = $1";
/// A replica's lease.
pub const REPLICA_GONE: &str = "DELETE FROM replicas WHERE id = $1";
/// Streams of replicas whose lease ended.
pub const DEAD_STREAMS_GONE: &str = "DELETE FROM presence WHERE replica IN \
     (SELECT id FROM replicas WHERE expires_at < $1) \
     OR replica NOT IN (SELECT id FROM replicas)";
/// Leases that ended.
pub const DEAD_REPLICAS_GONE: &str = "DELETE FROM replicas WHERE expires_at < $1";
/// An application's devices (of one user) with a live stream.
pub const CONNECTED_DEVICES: &str = "SELECT DISTINCT p.device_id FROM presence p \
     JOIN replicas r ON r.id = p.replica JOIN devices d ON d.id = p.device_id \
     WHERE d.application_id = $1 AND ($2 IS NULL OR d.user_id = $2) AND r.expires_at > $3";
/// Replicas with a valid lease.
pub const LIVE_REPLICAS: &str = "SELECT count(*) FROM replicas WHERE expires_at > $1";
