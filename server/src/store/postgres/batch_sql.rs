//! The text of the group-commit statement (`batch.rs`), how its
//! connection plans it, one change's columns as it binds them, and how
//! its failures read.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use crate::domain::Change;
use crate::store::rows::{choices_text, transaction_columns, verdict_text};
use crate::store::sql::otp_lookup_allowed;

/// How the writing connection plans [`BATCH`]: once (a generic plan),
/// and along the primary keys whatever the statistics say (a plan made
/// while the tables were small must not scan them once they are large).
/// The relay's publishing connection plans its routing statement so too.
pub(crate) const PLANNING: [(&str, &str); 4] = [
    ("plan_cache_mode", "force_generic_plan"),
    ("enable_seqscan", "off"),
    ("enable_hashjoin", "off"),
    ("enable_mergejoin", "off"),
];

/// Applies every batch: per change `n` (its place in the batch) the
/// transaction's columns in table order, its event, the compare-and-set and
/// guards — the columns of
/// `store::params::ChangeParams`, one array each. Returns the `n` of each
/// change that applied.
pub(super) const BATCH: &str = concat!(
    "WITH c AS MATERIALIZED (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], \
       $4::text[], $5::text[], $6::uuid[], $7::text[], $8::text[], $9::jsonb[], $10::bytea[], \
       $11::bytea[], $12::bytea[], $13::int2[], $14::text[], $15::timestamptz[], \
       $16::timestamptz[], $17::timestamptz[], $18::int8[], $19::bytea[], $20::text[], \
       $21::text[], $22::int2[], $23::text[], $24::text[], $25::uuid[], $26::text[], \
       $27::bool[], $28::timestamptz[], $29::int8[], $30::uuid[], $31::timestamptz[], \
       $32::int8[], $33::timestamptz[]) \
       WITH ORDINALITY AS c (id, application_id, kind, state, user_id, device_id, \
       reason, message, context, otp_hash, nonce, decision_signature, match_number, \
       number_choices, created_at, expires_at, completed_at, version, binding, decision, \
       decision_reason, picked_number, event_type, event_user_id, event_device_id, \
       event_reason, event_fraud_reported, event_at, expected, guard_device, \
       guard_unexpired_at, guard_lookup_limit, guard_lookup_over, n)), ",
    // Every device a change guards, locked in id
    // order before any transaction row: a concurrent revocation either
    // committed first and is seen, or waits for this batch.
    "d AS MATERIALIZED (SELECT id, application_id, revoked_at, otp_strikes, \
       otp_window_start FROM devices \
       WHERE id = ANY($30::uuid[]) ORDER BY id FOR NO KEY UPDATE), ",
    // The compare-and-set and guards of each change to a stored
    // transaction; the uncorrelated `count(*)` runs once, first.
    "u AS (UPDATE transactions t SET state = c.state, user_id = c.user_id, \
         device_id = c.device_id, reason = c.reason, otp_hash = c.otp_hash, nonce = c.nonce, \
         decision_signature = c.decision_signature, completed_at = c.completed_at, \
         version = c.version, decision = c.decision, decision_reason = c.decision_reason, \
         picked_number = c.picked_number \
       FROM c \
       WHERE (SELECT count(*) FROM d) >= 0 \
         AND c.expected IS NOT NULL AND t.id = c.id AND t.application_id = c.application_id \
         AND t.version = c.expected \
         AND (c.guard_device IS NULL OR EXISTS (SELECT 1 FROM d WHERE d.id = c.guard_device \
           AND d.application_id = c.application_id AND d.revoked_at IS NULL \
           AND (c.guard_lookup_limit IS NULL OR ",
    otp_lookup_allowed!("c.guard_lookup_limit", "c.guard_lookup_over"),
    "))) \
         AND (c.guard_unexpired_at IS NULL OR t.expires_at > c.guard_unexpired_at) \
       RETURNING c.n), ",
    "i AS (INSERT INTO transactions (",
    transaction_columns!(),
    ") SELECT id, application_id, kind, state, user_id, device_id, reason, message, context, \
         otp_hash, nonce, decision_signature, match_number, number_choices, created_at, \
         expires_at, completed_at, version, binding, decision, decision_reason, picked_number \
       FROM c WHERE c.expected IS NULL ORDER BY n RETURNING id), ",
    "ok AS (SELECT n FROM u UNION ALL \
       SELECT c.n FROM i JOIN c ON c.id = i.id AND c.expected IS NULL), ",
    "e AS (INSERT INTO events (application_id, type, transaction_id, user_id, device_id, \
         reason, fraud_reported, occurred_at, binding, position) \
       SELECT c.application_id, c.event_type, c.id, c.event_user_id, c.event_device_id, \
         c.event_reason, c.event_fraud_reported, c.event_at, c.binding, \
         ((pg_current_xact_id()::text::bigint << 20) + set_config('assent.event_ordinal', \
           (COALESCE(NULLIF(current_setting('assent.event_ordinal', true), ''), '0')::int + 1)\
           ::text, true)::bigint) \
       FROM c JOIN ok ON ok.n = c.n ORDER BY c.n) ",
    "SELECT n FROM ok"
);

/// One change's columns, as the batch statement binds them.
pub(super) struct Row {
    pub(super) id: Uuid,
    pub(super) application_id: Uuid,
    pub(super) kind: &'static str,
    pub(super) state: &'static str,
    pub(super) user_id: Option<String>,
    pub(super) device_id: Option<Uuid>,
    pub(super) reason: Option<&'static str>,
    pub(super) message: String,
    pub(super) context: Json<std::collections::BTreeMap<String, String>>,
    pub(super) otp_hash: Option<Vec<u8>>,
    pub(super) nonce: Option<Vec<u8>>,
    pub(super) decision_signature: Option<Vec<u8>>,
    pub(super) match_number: Option<i16>,
    pub(super) number_choices: String,
    pub(super) created_at: DateTime<Utc>,
    pub(super) expires_at: DateTime<Utc>,
    pub(super) completed_at: Option<DateTime<Utc>>,
    pub(super) version: i64,
    pub(super) binding: Option<Vec<u8>>,
    pub(super) decision: Option<&'static str>,
    pub(super) decision_reason: Option<&'static str>,
    pub(super) picked_number: Option<i16>,
    pub(super) event_type: &'static str,
    pub(super) event_user_id: Option<String>,
    pub(super) event_device_id: Option<Uuid>,
    pub(super) event_reason: Option<&'static str>,
    pub(super) event_fraud_reported: bool,
    pub(super) event_at: DateTime<Utc>,
    pub(super) expected: Option<i64>,
    pub(super) guard_device: Option<Uuid>,
    pub(super) guard_unexpired_at: Option<DateTime<Utc>>,
    pub(super) guard_lookup_limit: Option<i64>,
    pub(super) guard_lookup_over: Option<DateTime<Utc>>,
}

impl Row {
    /// The columns of `change`, as `ChangeParams` binds them.
    pub(super) fn of(change: &Change) -> Self {
        let Change {
            expected,
            after: t,
            guard,
            event: e,
            notices: _,
        } = change;
        let answer = t.answer.as_ref();
        Self {
            id: t.id.as_uuid(),
            application_id: t.application_id.as_uuid(),
            kind: t.kind.as_str(),
            state: t.state.as_str(),
            user_id: t.user_id.as_ref().map(|u| u.as_str().to_owned()),
            device_id: t.device_id.map(|d| d.as_uuid()),
            reason: t.reason.map(|r| r.as_str()),
            message: t.message.clone(),
            context: Json(t.context.clone()),
            otp_hash: t.otp_hash.as_ref().map(|h| h.as_bytes().to_vec()),
            nonce: t.nonce.map(|n| n.to_vec()),
            decision_signature: t.decision_signature.clone(),
            match_number: t.match_number.map(i16::from),
            number_choices: choices_text(&t.number_choices),
            created_at: t.created_at,
            expires_at: t.expires_at,
            completed_at: t.completed_at,
            version: t.version,
            binding: t.binding.clone(),
            decision: answer.map(|a| verdict_text(a.verdict)),
            decision_reason: answer.and_then(|a| a.reason).map(|r| r.as_str()),
            picked_number: answer.and_then(|a| a.number).map(i16::from),
            event_type: e.event_type.as_str(),
            event_user_id: e.user_id.as_ref().map(|u| u.as_str().to_owned()),
            event_device_id: e.device_id.map(|d| d.as_uuid()),
            event_reason: e.reason.map(|r| r.as_str()),
            event_fraud_reported: e.fraud_reported,
            event_at: e.at,
            expected: *expected,
            guard_device: guard.device_unrevoked.map(|d| d.as_uuid()),
            guard_unexpired_at: guard.unexpired_at,
            guard_lookup_limit: guard.otp_lookups.map(|w| w.limit),
            guard_lookup_over: guard.otp_lookups.map(|w| w.over_if_opened_by),
        }
    }
}

/// Whether a failed statement surely changed nothing and left its
/// connection usable: the database refused it (a constraint, bad data, a
/// deadlock or serialization failure), rather than the connection, the
/// server's state or a timeout ending it.
pub(super) fn changed_nothing(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    let code = db.code().unwrap_or_default();
    !matches!(
        code.get(..2).unwrap_or_default(),
        "08" | "53" | "57" | "58" | "XX"
    )
}

/// The same failure for another caller of the batch (driver errors do not
/// clone): a connection-level error stays one, so it maps alike.
pub(super) fn copy(error: &sqlx::Error) -> sqlx::Error {
    match error {
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        sqlx::Error::Io(io) => sqlx::Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        other => sqlx::Error::Protocol(other.to_string()),
    }
}
