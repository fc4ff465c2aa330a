//! Group commit on PostgreSQL: concurrent changes share one statement, one
//! commit and one WAL flush.
//!
//! The store has one connection for writes. A caller that finds it idle
//! leads: in its own task, with no hand-over and no added wait, it applies
//! its change together with every follower queued meanwhile (at most
//! [`MAX_BATCH`]), then hands the lead to the next follower that arrived
//! while the batch committed, who does the same. A batch is one
//! autocommitted statement ([`BATCH`]): per change the same compare-and-set
//! and commit-time guards as the single-change statement, the strike given
//! back and the event appended, all or nothing; it returns which changes
//! applied, and each caller is answered only after that commit (so only
//! once its change is durable). A lone change runs the single-change
//! statement (`update_transaction` or `insert_transaction`), which costs
//! the database less.
//!
//! - **One writing connection per store** (per replica): measured on two
//!   cores at 32 concurrent flows, one writer did 1 833 flows/s, two
//!   (routed by device) 1 633, four about 1 000 — fewer writers make
//!   larger batches, and a statement's cost is mostly per batch. Replicas
//!   each have their own.
//! - **Conflicts**: a batch never holds two changes of one transaction
//!   (the later waits for the next batch); its device rows are locked
//!   first, in id order, then its transaction rows in id order, so batches
//!   of several replicas take locks in one order.
//! - **A failing statement** (a constraint, bad data, a deadlock victim)
//!   changed nothing: the batch is split in halves and each half applied
//!   again, down to the one change that fails, which gets its own error.
//! - **A lost connection** leaves the whole batch's outcome unknown (it
//!   committed entirely or not at all): every caller in it gets
//!   `Unavailable`, as a single change did; whoever retries finds its
//!   change applied or not, never half. So does a batch whose leader's
//!   caller went away mid-statement (its connection is closed then).
//! - **Bounds**: at most [`QUEUE`] followers wait (more are refused with
//!   `Unavailable`); a follower whose caller has gone before its batch
//!   starts is left out of it.
//!
//! Event positions are unchanged: a batch is one database transaction, so
//! its events share its id and take consecutive ordinals, and readers take
//! only events of transactions older than every one still running.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::postgres::PgConnectOptions;
use sqlx::types::Json;
use sqlx::{Connection as _, PgConnection};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{PgStore, db_error};
use crate::domain::Change;
use crate::store::engine::Engine;
use crate::store::params::ChangeParams;
use crate::store::rows::{choices_text, transaction_columns, verdict_text};
use crate::store::{StoreError, StoreResult};

/// Most changes in one statement.
pub(super) const MAX_BATCH: usize = 64;

/// Most followers waiting.
const QUEUE: usize = 256;

/// How the writing connection plans [`BATCH`]: once (a generic plan),
/// and along the primary keys whatever the statistics say (a plan made
/// while the tables were small must not scan them once they are large).
const PLANNING: [(&str, &str); 4] = [
    ("plan_cache_mode", "force_generic_plan"),
    ("enable_seqscan", "off"),
    ("enable_hashjoin", "off"),
    ("enable_mergejoin", "off"),
];

/// Applies every batch: per change `n` (its place in the batch) the
/// transaction's columns in table order, its event, the compare-and-set and
/// guards, and the device whose strike it gives back — the columns of
/// `store::params::ChangeParams`, one array each. Returns the `n` of each
/// change that applied.
const BATCH: &str = concat!(
    "WITH c AS MATERIALIZED (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], \
       $4::text[], $5::text[], $6::uuid[], $7::text[], $8::text[], $9::jsonb[], $10::bytea[], \
       $11::bytea[], $12::bytea[], $13::int2[], $14::text[], $15::timestamptz[], \
       $16::timestamptz[], $17::timestamptz[], $18::int8[], $19::bytea[], $20::text[], \
       $21::text[], $22::int2[], $23::text[], $24::text[], $25::uuid[], $26::text[], \
       $27::bool[], $28::timestamptz[], $29::int8[], $30::uuid[], $31::timestamptz[], \
       $32::uuid[]) WITH ORDINALITY AS c (id, application_id, kind, state, user_id, device_id, \
       reason, message, context, otp_hash, nonce, decision_signature, match_number, \
       number_choices, created_at, expires_at, completed_at, version, binding, decision, \
       decision_reason, picked_number, event_type, event_user_id, event_device_id, \
       event_reason, event_fraud_reported, event_at, expected, guard_device, \
       guard_unexpired_at, strike_device, n)), ",
    // Every device a change guards or gives a strike back to, locked in id
    // order before any transaction row: a concurrent revocation either
    // committed first and is seen, or waits for this batch.
    "d AS MATERIALIZED (SELECT id, application_id, revoked_at FROM devices \
       WHERE id = ANY($30::uuid[] || $32::uuid[]) ORDER BY id FOR NO KEY UPDATE), ",
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
           AND d.application_id = c.application_id AND d.revoked_at IS NULL)) \
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
    "s AS (UPDATE devices SET otp_strikes = GREATEST(otp_strikes - g.k, 0) \
       FROM (SELECT c.strike_device AS id, count(*) AS k FROM c JOIN ok ON ok.n = c.n \
             WHERE c.expected IS NOT NULL AND c.strike_device IS NOT NULL GROUP BY 1) g \
       WHERE devices.id = g.id AND otp_strikes > 0), ",
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
struct Row {
    id: Uuid,
    application_id: Uuid,
    kind: &'static str,
    state: &'static str,
    user_id: Option<String>,
    device_id: Option<Uuid>,
    reason: Option<&'static str>,
    message: String,
    context: Json<std::collections::BTreeMap<String, String>>,
    otp_hash: Option<Vec<u8>>,
    nonce: Option<Vec<u8>>,
    decision_signature: Option<Vec<u8>>,
    match_number: Option<i16>,
    number_choices: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    version: i64,
    binding: Option<Vec<u8>>,
    decision: Option<&'static str>,
    decision_reason: Option<&'static str>,
    picked_number: Option<i16>,
    event_type: &'static str,
    event_user_id: Option<String>,
    event_device_id: Option<Uuid>,
    event_reason: Option<&'static str>,
    event_fraud_reported: bool,
    event_at: DateTime<Utc>,
    expected: Option<i64>,
    guard_device: Option<Uuid>,
    guard_unexpired_at: Option<DateTime<Utc>>,
    strike_device: Option<Uuid>,
}

impl Row {
    /// The columns of `change`, as `ChangeParams` binds them.
    fn of(change: &Change) -> Self {
        let Change {
            expected,
            after: t,
            guard,
            event: e,
            gives_back_strike,
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
            strike_device: gives_back_strike.map(|d| d.as_uuid()),
        }
    }
}

/// A follower's change waiting for a batch, and where its outcome goes.
struct Job {
    change: Change,
    reply: oneshot::Sender<Reply>,
}

/// What a follower is told.
enum Reply {
    /// Its change's outcome.
    Done(StoreResult<bool>),
    /// It leads the next batch.
    Lead,
}

/// The store's group commit: its one connection for writes and the
/// followers waiting for the next batch.
#[derive(Debug)]
pub(super) struct GroupCommit {
    state: Mutex<State>,
}

struct State {
    /// Whether a leader is running a batch (or about to).
    leading: bool,
    /// The writing connection, while no leader holds it.
    connection: Option<Connection>,
    /// Followers, in arrival order.
    queue: VecDeque<Job>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("leading", &self.leading)
            .field("waiting", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Group commit over a connection of its own to where `options` point
    /// (opened when first needed; connecting waits at most `timeout`).
    pub(super) fn new(options: &PgConnectOptions, timeout: Duration) -> Arc<Self> {
        let connection = Connection {
            options: options.clone().options(PLANNING),
            timeout,
            open: None,
        };
        Arc::new(Self {
            state: Mutex::new(State {
                leading: false,
                connection: Some(connection),
                queue: VecDeque::new(),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state whole, and none panics.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands the lead to the first follower still waiting, or marks the
    /// connection idle.
    fn hand_off(state: &mut State) {
        while let Some(job) = state.queue.pop_front() {
            if job.reply.send(Reply::Lead).is_ok() {
                return;
            }
        }
        state.leading = false;
    }

    /// Applies `change` in the next batch; `false` if its compare-and-set
    /// or a guard failed.
    pub(super) async fn apply(&self, change: &Change) -> StoreResult<bool> {
        let follower = {
            let mut state = self.state();
            if state.leading {
                if state.queue.len() >= QUEUE {
                    return Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut));
                }
                let (reply, told) = oneshot::channel();
                state.queue.push_back(Job {
                    change: change.clone(),
                    reply,
                });
                Some(told)
            } else {
                state.leading = true;
                None
            }
        };
        if let Some(told) = follower {
            let mut waiting = Waiting { group: self, told };
            match (&mut waiting.told).await {
                Ok(Reply::Done(outcome)) => return outcome,
                Ok(Reply::Lead) => {}
                // The leader's caller went away with this change in its
                // batch: the outcome is unknown.
                Err(_) => return Err(StoreError::Unavailable(sqlx::Error::PoolClosed)),
            }
        }
        self.lead(change).await
    }

    /// Runs one batch — `change` and the followers waiting now — then
    /// hands the lead to the next follower, if any.
    async fn lead(&self, change: &Change) -> StoreResult<bool> {
        let (reply, mut told) = oneshot::channel();
        let mut leadership = Leadership {
            group: self,
            connection: None,
            in_flight: false,
        };
        let mut batch = vec![Job {
            change: change.clone(),
            reply,
        }];
        {
            let mut state = self.state();
            leadership.connection = state.connection.take();
            // A second change of a transaction already in the batch waits
            // for the next one, as do followers beyond the bound; those
            // whose callers have gone are left out.
            let mut ids: HashSet<Uuid> = HashSet::from([change.after.id.as_uuid()]);
            let mut rest = VecDeque::new();
            while let Some(job) = state.queue.pop_front() {
                if job.reply.is_closed() {
                    continue;
                }
                if batch.len() < MAX_BATCH && ids.insert(job.change.after.id.as_uuid()) {
                    batch.push(job);
                } else {
                    rest.push_back(job);
                }
            }
            state.queue = rest;
        }
        let Some(connection) = leadership.connection.as_mut() else {
            return Err(StoreError::Unavailable(sqlx::Error::PoolClosed));
        };
        // One lock order for transaction rows across batches.
        batch.sort_by_key(|job| job.change.after.id.as_uuid());
        leadership.in_flight = true;
        apply_batch(connection, batch).await;
        leadership.in_flight = false;
        drop(leadership);
        match told.try_recv() {
            Ok(Reply::Done(outcome)) => outcome,
            _ => Err(StoreError::Unavailable(sqlx::Error::PoolClosed)),
        }
    }
}

/// The lead of one batch. On drop — done, or the leader's caller gone —
/// it gives the connection back (closed if a statement was cut off
/// mid-flight, its followers then told the outcome is unknown) and hands
/// the lead to the first follower still waiting.
struct Leadership<'a> {
    group: &'a GroupCommit,
    connection: Option<Connection>,
    in_flight: bool,
}

impl Drop for Leadership<'_> {
    fn drop(&mut self) {
        if self.in_flight
            && let Some(connection) = self.connection.as_mut()
        {
            connection.open = None;
        }
        let mut state = self.group.state();
        if let Some(connection) = self.connection.take() {
            state.connection = Some(connection);
        }
        GroupCommit::hand_off(&mut state);
    }
}

/// A follower waiting. If its caller goes away after the lead was handed
/// to it, it hands the lead on.
struct Waiting<'a> {
    group: &'a GroupCommit,
    told: oneshot::Receiver<Reply>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Ok(Reply::Lead) = self.told.try_recv() {
            GroupCommit::hand_off(&mut self.group.state());
        }
    }
}

/// Group commit's own connection, opened when needed and dropped after any
/// failure that may have broken it.
struct Connection {
    options: PgConnectOptions,
    timeout: Duration,
    open: Option<PgConnection>,
}

impl Connection {
    /// The open connection, or a new one.
    async fn get(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        match self.open {
            Some(ref mut open) => Ok(open),
            None => {
                let connect = PgConnection::connect_with(&self.options);
                let open = tokio::time::timeout(self.timeout, connect)
                    .await
                    .map_err(|_| sqlx::Error::PoolTimedOut)??;
                Ok(self.open.insert(open))
            }
        }
    }
}

/// Applies `batch` and answers each of its callers; a batch whose
/// statement failed on its own (the connection is fine) is split.
fn apply_batch(connection: &mut Connection, mut batch: Vec<Job>) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        let outcome = match connection.get().await {
            Ok(conn) => run(conn, &batch).await,
            Err(error) => Err(error),
        };
        if outcome.as_ref().is_err_and(|error| !changed_nothing(error)) {
            connection.open = None;
        }
        match outcome {
            Ok(applied) => {
                for (n, job) in batch.into_iter().enumerate() {
                    let _ = job.reply.send(Reply::Done(Ok(applied.contains(&n))));
                }
            }
            Err(error) if batch.len() > 1 && changed_nothing(&error) => {
                tracing::debug!(error = %error, size = batch.len(), "batch failed; splitting it");
                let second = batch.split_off(batch.len() / 2);
                apply_batch(connection, batch).await;
                apply_batch(connection, second).await;
            }
            Err(error) => {
                let mut jobs = batch.into_iter();
                let last = jobs.next_back();
                for job in jobs {
                    let _ = job.reply.send(Reply::Done(Err(db_error(copy(&error)))));
                }
                if let Some(job) = last {
                    let _ = job.reply.send(Reply::Done(Err(db_error(error))));
                }
            }
        }
    })
}

/// Whether a failed statement surely changed nothing and left its
/// connection usable: the database refused it (a constraint, bad data, a
/// deadlock or serialization failure), rather than the connection, the
/// server's state or a timeout ending it.
fn changed_nothing(error: &sqlx::Error) -> bool {
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
fn copy(error: &sqlx::Error) -> sqlx::Error {
    match error {
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        sqlx::Error::Io(io) => sqlx::Error::Io(std::io::Error::new(io.kind(), io.to_string())),
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// Runs one batch statement; the places of the changes that applied.
async fn run(conn: &mut PgConnection, batch: &[Job]) -> Result<HashSet<usize>, sqlx::Error> {
    // A lone change runs the single-change statement: the same guards,
    // less for the database to do.
    if let [job] = batch {
        let q = &<PgStore as Engine>::queries().dialect;
        let write = match job.change.expected {
            None => &q.insert_transaction,
            Some(_) => &q.update_transaction,
        };
        let changed = write.execute(conn, ChangeParams(&job.change)).await?;
        return Ok(if changed > 0 {
            HashSet::from([0])
        } else {
            HashSet::new()
        });
    }
    let rows: Vec<Row> = batch.iter().map(|job| Row::of(&job.change)).collect();
    let rows = || rows.iter();
    let query = sqlx::query_scalar::<_, i64>(BATCH)
        .bind(rows().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows().map(|r| r.application_id).collect::<Vec<_>>())
        .bind(rows().map(|r| r.kind).collect::<Vec<_>>())
        .bind(rows().map(|r| r.state).collect::<Vec<_>>())
        .bind(rows().map(|r| r.user_id.as_deref()).collect::<Vec<_>>())
        .bind(rows().map(|r| r.device_id).collect::<Vec<_>>())
        .bind(rows().map(|r| r.reason).collect::<Vec<_>>())
        .bind(rows().map(|r| r.message.as_str()).collect::<Vec<_>>())
        .bind(rows().map(|r| &r.context).collect::<Vec<_>>())
        .bind(rows().map(|r| r.otp_hash.as_deref()).collect::<Vec<_>>())
        .bind(rows().map(|r| r.nonce.as_deref()).collect::<Vec<_>>())
        .bind(
            rows()
                .map(|r| r.decision_signature.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(rows().map(|r| r.match_number).collect::<Vec<_>>())
        .bind(
            rows()
                .map(|r| r.number_choices.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(rows().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(rows().map(|r| r.expires_at).collect::<Vec<_>>())
        .bind(rows().map(|r| r.completed_at).collect::<Vec<_>>())
        .bind(rows().map(|r| r.version).collect::<Vec<_>>())
        .bind(rows().map(|r| r.binding.as_deref()).collect::<Vec<_>>())
        .bind(rows().map(|r| r.decision).collect::<Vec<_>>())
        .bind(rows().map(|r| r.decision_reason).collect::<Vec<_>>())
        .bind(rows().map(|r| r.picked_number).collect::<Vec<_>>())
        .bind(rows().map(|r| r.event_type).collect::<Vec<_>>())
        .bind(
            rows()
                .map(|r| r.event_user_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(rows().map(|r| r.event_device_id).collect::<Vec<_>>())
        .bind(rows().map(|r| r.event_reason).collect::<Vec<_>>())
        .bind(rows().map(|r| r.event_fraud_reported).collect::<Vec<_>>())
        .bind(rows().map(|r| r.event_at).collect::<Vec<_>>())
        .bind(rows().map(|r| r.expected).collect::<Vec<_>>())
        .bind(rows().map(|r| r.guard_device).collect::<Vec<_>>())
        .bind(rows().map(|r| r.guard_unexpired_at).collect::<Vec<_>>())
        .bind(rows().map(|r| r.strike_device).collect::<Vec<_>>());
    let applied = query.fetch_all(conn).await?;
    Ok(applied
        .into_iter()
        .filter_map(|n| usize::try_from(n - 1).ok())
        .collect())
}
