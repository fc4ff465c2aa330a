//! The statements both engines run unchanged, and the [`Queries`] value
//! built from them and an engine's [`DialectQueries`]. The states a
//! statement selects by come from the domain's definitions
//! ([`TransactionState::OPEN`], [`TransactionKind::decided_from`]), written
//! into the text once when the queries are built; values the domain decides
//! per call (a window's start, the state that answers a push) are bound.

use crate::domain::{TransactionKind, TransactionState};
use crate::store::queries::{DialectQueries, Queries, Statement};
use crate::store::rows::{device_columns, event_columns, transaction_columns};

/// Reserves an OTP lookup of device `$1`: allowed while the device has
/// fewer than `$2` strikes in its window (a window opened at or before `$3`
/// starts anew at `$4`). A lookup that matches an open OTP — transaction
/// `$5` of application `$6`, still `PENDING`, whose OTP hash is `$7` — takes
/// no strike; any other takes one. So a device's valid OTPs never use up
/// its allowance, however many are in flight, while wrong ones stay bounded
/// and, once the device cools off, even a valid one waits. One row, one
/// statement: atomic under the row lock on both engines.
macro_rules! reserve_otp_attempt {
    () => {
        concat!(
            "UPDATE devices SET \
       otp_strikes = CASE WHEN otp_window_start IS NULL OR otp_window_start <= $3 \
         THEN 0 ELSE otp_strikes END \
         + CASE WHEN EXISTS (SELECT 1 FROM transactions WHERE id = $5 AND application_id = $6 \
             AND state = 'PENDING' AND otp_hash = $7) THEN 0 ELSE 1 END, \
       otp_window_start = CASE WHEN otp_window_start IS NULL OR otp_window_start <= $3 \
         THEN $4 ELSE otp_window_start END \
     WHERE id = $1 AND ",
            $crate::store::sql::otp_lookup_allowed!("$2", "$3")
        )
    };
}
pub(crate) use reserve_otp_attempt;

/// Whether a device row may look up an OTP: it is not cooling off — its
/// window is over (opened at or before `$over`) or holds fewer than
/// `$limit` strikes. The reservation takes a lookup under it; a scan
/// decided without a reservation (`Guard::otp_lookups`, its limit and
/// window start bound) requires it at commit, the same condition read
/// rather than taken, as a valid OTP takes no strike.
macro_rules! otp_lookup_allowed {
    ($limit:literal, $over:literal) => {
        concat!(
            "(otp_window_start IS NULL OR otp_window_start <= ",
            $over,
            " OR otp_strikes < ",
            $limit,
            ")"
        )
    };
}
pub(crate) use otp_lookup_allowed;

/// The checkpoint columns.
macro_rules! checkpoint_columns {
    () => {
        "application_id, seq, from_cursor, through_cursor, entries, prev_hash, hash, key_id, \
         signature, created_at"
    };
}

/// A SQL list of states: `'PENDING', 'SCANNED'`.
pub(crate) fn state_list(states: &[TransactionState]) -> String {
    let quoted: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
    quoted.join(", ")
}

/// Open transactions bound to a device.
fn held_by_sql() -> String {
    format!(
        "SELECT {} FROM transactions WHERE device_id = $1 AND state IN ({}) ORDER BY id",
        transaction_columns!(),
        state_list(TransactionState::OPEN)
    )
}

/// Their ids, in id order.
fn held_ids_sql() -> String {
    format!(
        "SELECT id FROM transactions WHERE device_id = $1 AND state IN ({}) ORDER BY id",
        state_list(TransactionState::OPEN)
    )
}

/// Open transactions past their expiry (the partial index's predicate).
fn overdue_transactions_sql() -> String {
    format!(
        "SELECT {} FROM transactions WHERE state IN ({}) AND expires_at <= $1 \
         ORDER BY expires_at LIMIT $2",
        transaction_columns!(),
        state_list(TransactionState::OPEN)
    )
}

/// OTP transactions a device scanned and pushes to its user, each in the
/// state it is decided from.
fn open_confirmations_sql() -> String {
    format!(
        "SELECT {} FROM transactions WHERE (device_id = $1 AND state = '{}') \
           OR (kind = '{}' AND state = '{}' AND application_id = $2 AND user_id = $3) \
         ORDER BY created_at",
        transaction_columns!(),
        TransactionKind::Otp.decided_from().as_str(),
        TransactionKind::Push.as_str(),
        TransactionKind::Push.decided_from().as_str()
    )
}

/// A user's open push (the partial unique index's predicate).
fn open_push_sql() -> String {
    format!(
        "SELECT {} FROM transactions WHERE application_id = $1 AND user_id = $2 \
           AND kind = '{}' AND state = '{}'",
        transaction_columns!(),
        TransactionKind::Push.as_str(),
        TransactionKind::Push.decided_from().as_str()
    )
}

/// Pushes created after `$3` and after the last push that reached `$4`.
fn count_unanswered_pushes_sql() -> String {
    let push = TransactionKind::Push.as_str();
    format!(
        "SELECT count(*) FROM transactions t \
         WHERE t.application_id = $1 AND t.user_id = $2 AND t.kind = '{push}' \
           AND t.created_at > $3 \
           AND NOT EXISTS (SELECT 1 FROM transactions a WHERE a.application_id = $1 \
             AND a.user_id = $2 AND a.kind = '{push}' AND a.state = $4 \
             AND a.completed_at >= t.created_at)"
    )
}

/// An engine's queries: the shared statements and its `dialect`.
pub(crate) fn queries(dialect: DialectQueries) -> Queries {
    Queries {
        // A new application.
        insert_application: Statement::new(
            "INSERT INTO applications (id, name, created_at) VALUES ($1, $2, $3)",
        ),
        // A new API key.
        insert_api_key: Statement::new(
            "INSERT INTO api_keys (id, application_id, secret_hash, \
         created_at) VALUES ($1, $2, $3, $4)",
        ),
        // Every application.
        list_applications: Statement::new(
            "SELECT id, name, created_at FROM applications ORDER BY created_at, id",
        ),
        // An unrevoked API key with its application.
        find_api_key: Statement::new(
            "SELECT k.secret_hash, a.id, a.name, a.created_at FROM api_keys k \
         JOIN applications a ON a.id = k.application_id WHERE k.id = $1 AND k.revoked_at IS NULL",
        ),
        // Adds a key to an existing application.
        add_api_key: Statement::new(
            "INSERT INTO api_keys (id, application_id, secret_hash, \
         created_at) SELECT $1, id, $3, $4 FROM applications WHERE id = $2",
        ),
        // An application's keys.
        list_api_keys: Statement::new(
            "SELECT id, created_at, revoked_at FROM api_keys \
         WHERE application_id = $1 ORDER BY created_at, id",
        ),
        // Revokes a key once.
        revoke_api_key: Statement::new(
            "UPDATE api_keys SET revoked_at = $3 \
         WHERE id = $2 AND application_id = $1 AND revoked_at IS NULL",
        ),
        // A new enrollment code.
        insert_enrollment: Statement::new(
            "INSERT INTO enrollments (id, application_id, user_id, \
         secret_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        ),
        // Uses up an enrollment code once.
        consume_enrollment: Statement::new(
            "UPDATE enrollments SET consumed_at = $2 \
         WHERE id = $1 AND consumed_at IS NULL \
         RETURNING application_id, user_id, secret_hash, expires_at",
        ),
        // A new device.
        insert_device: Statement::new(
            "INSERT INTO devices (id, application_id, user_id, name, \
         public_key, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        ),
        // One device.
        find_device: Statement::new(concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices d JOIN applications a ON a.id = d.application_id WHERE d.id = $1"
        )),
        // An application's devices, optionally of one user.
        list_devices: Statement::new(concat!(
            "SELECT ",
            device_columns!(),
            " FROM devices d JOIN applications a ON a.id = d.application_id \
         WHERE d.application_id = $1 AND ($2 IS NULL OR d.user_id = $2) \
         ORDER BY d.created_at, d.id"
        )),
        // Records that a device is connected.
        touch_device: Statement::new("UPDATE devices SET last_seen_at = $2 WHERE id = $1"),
        // Open transactions bound to a device.
        held_by: Statement::new(held_by_sql()),
        // Their ids, in id order.
        held_ids: Statement::new(held_ids_sql()),
        // Revokes a device once.
        revoke_device: Statement::new(
            "UPDATE devices SET revoked_at = $3 \
         WHERE id = $1 AND application_id = $2 AND revoked_at IS NULL",
        ),
        // One transaction of an application.
        find_transaction: Statement::new(concat!(
            "SELECT ",
            transaction_columns!(),
            " FROM transactions WHERE id = $1 AND application_id = $2"
        )),
        // Open transactions past their expiry (the partial index's predicate).
        overdue_transactions: Statement::new(overdue_transactions_sql()),
        // Scanned transactions of a device and pending pushes to its user.
        open_confirmations: Statement::new(open_confirmations_sql()),
        // A user's pending push.
        open_push: Statement::new(open_push_sql()),
        // Pushes since a time and since the user's last accepted one.
        count_unanswered_pushes: Statement::new(count_unanswered_pushes_sql()),
        // The highest position among an application's committed events.
        events_head: Statement::new("SELECT max(position) FROM events WHERE application_id = $1"),
        // Removes old events, returning their positions.
        purge_events: Statement::new(
            "DELETE FROM events WHERE occurred_at < $1 RETURNING position",
        ),
        // An application's latest event of one transaction.
        last_event_of: Statement::new(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE transaction_id = $2 AND application_id = $1 \
         ORDER BY position DESC LIMIT 1"
        )),
        // The current server key.
        current_server_key: Statement::new(
            "SELECT id, public_key, secret_key, created_at, retired_at \
         FROM server_keys WHERE retired_at IS NULL",
        ),
        // Every server key, newest first.
        server_keys: Statement::new(
            "SELECT id, public_key, secret_key, created_at, retired_at \
         FROM server_keys ORDER BY created_at DESC, id",
        ),
        // Retires the current server key.
        retire_server_key: Statement::new(
            "UPDATE server_keys SET retired_at = $1 WHERE retired_at IS NULL",
        ),
        // A new current server key, unless one is current.
        insert_server_key: Statement::new(
            "INSERT INTO server_keys (id, public_key, secret_key, \
         created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        ),
        // An application's newest checkpoint.
        last_checkpoint: Statement::new(concat!(
            "SELECT ",
            checkpoint_columns!(),
            " FROM checkpoints WHERE application_id = $1 ORDER BY seq DESC LIMIT 1"
        )),
        // An application's checkpoints in chain order.
        checkpoints: Statement::new(concat!(
            "SELECT ",
            checkpoint_columns!(),
            " FROM checkpoints WHERE application_id = $1 ORDER BY seq"
        )),
        // A new checkpoint unless its place in the chain is taken.
        insert_checkpoint: Statement::new(concat!(
            "INSERT INTO checkpoints (",
            checkpoint_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING"
        )),
        // Stored events of an application in a cursor range, as they are.
        stored_events: Statement::new(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events WHERE application_id = $1 AND position > $2 AND position <= $3 \
         ORDER BY position"
        )),
        // Extends (or takes) a replica's lease.
        renew_replica: Statement::new(
            "INSERT INTO replicas (id, expires_at) VALUES ($1, $2) \
         ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at",
        ),
        // A live stream.
        stream_opened: Statement::new(
            "INSERT INTO presence (stream, device_id, replica, opened_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        ),
        // A stream ended.
        stream_closed: Statement::new("DELETE FROM presence WHERE stream = $1"),
        // A replica's streams.
        replica_streams_gone: Statement::new("DELETE FROM presence WHERE replica = $1"),
        // A replica's lease.
        replica_gone: Statement::new("DELETE FROM replicas WHERE id = $1"),
        // Streams of replicas whose lease ended.
        dead_streams_gone: Statement::new(
            "DELETE FROM presence WHERE replica IN \
         (SELECT id FROM replicas WHERE expires_at < $1) \
         OR replica NOT IN (SELECT id FROM replicas)",
        ),
        // Leases that ended.
        dead_replicas_gone: Statement::new("DELETE FROM replicas WHERE expires_at < $1"),
        // An application's devices (of one user) with a live stream.
        connected_devices: Statement::new(
            "SELECT DISTINCT p.device_id FROM presence p \
         JOIN replicas r ON r.id = p.replica JOIN devices d ON d.id = p.device_id \
         WHERE d.application_id = $1 AND ($2 IS NULL OR d.user_id = $2) AND r.expires_at > $3",
        ),
        // Replicas with a valid lease.
        live_replicas: Statement::new("SELECT count(*) FROM replicas WHERE expires_at > $1"),
        // A replica holds waiters or subscribers of an application.
        listen_application: Statement::new(
            "INSERT INTO listeners (application_id, kind, replica) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
        ),
        // It holds none any more.
        unlisten_application: Statement::new(
            "DELETE FROM listeners WHERE application_id = $1 AND kind = $2 AND replica = $3",
        ),
        // A replica's listeners.
        replica_listeners_gone: Statement::new("DELETE FROM listeners WHERE replica = $1"),
        // Listeners of replicas whose lease ended.
        dead_listeners_gone: Statement::new(
            "DELETE FROM listeners WHERE replica IN \
         (SELECT id FROM replicas WHERE expires_at < $1) \
         OR replica NOT IN (SELECT id FROM replicas)",
        ),
        ciba: super::ciba_sql::queries(),
        webhooks: super::webhook_sql::queries(),
        dialect,
    }
}
