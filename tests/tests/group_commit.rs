//! Group commit on PostgreSQL: concurrent changes are applied in shared
//! batches (one statement, one commit), and a batch killed while it runs
//! leaves every change either applied with its event or not at all.
//!
//! The kill: a watcher polls `pg_stat_activity` for a backend running the
//! batch statement and ends it with `pg_terminate_backend` — the database
//! side of a crash, for exactly the connection that is mid-batch (a shared
//! PostgreSQL cannot be restarted by one test). Then, on a connection of
//! its own, every change must read back as its caller was told: applied
//! (`Ok(true)`) means the new version and exactly its one event are
//! stored; `Unavailable` (the outcome unknown) means all of it or none of
//! it — never the row without its event, nor the event without its row.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use assent_server::domain::transaction::NewOtpTransaction;
use assent_server::domain::{
    ApplicationId, Change, Context, Device, DeviceId, DeviceName, Message, NewDevice, Otp,
    Transaction, TransactionId, UserId,
};
use assent_server::store::{Store, StoreError};
use assent_tests::TestDb;
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::{Connection, PgConnection};

/// Rounds of the kill test.
const ROUNDS: usize = 100;

/// Changes applied concurrently in each round: half new transactions, half
/// scans of transactions created before the round.
const PER_ROUND: usize = 24;

/// The longest the kill test may take.
const TEST_LIMIT: Duration = Duration::from_secs(240);

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

/// A new OTP login (not applied yet) and its OTP.
fn new_otp(app: ApplicationId, seed: u64) -> (Change, Otp) {
    let otp = Otp::generate(&mut StdRng::seed_from_u64(seed), TransactionId::random());
    let new = NewOtpTransaction {
        id: otp.id(),
        application_id: app,
        user_id: None,
        message: Message::parse("Log in?").unwrap(),
        context: Context::parse(BTreeMap::new()).unwrap(),
        otp_hash: otp.hash(),
        ttl: Duration::from_secs(300),
        binding: None,
    };
    (Transaction::create_otp(new, now()), otp)
}

async fn device(store: &dyn Store, app: ApplicationId, owner: &str) -> Device {
    let mut public_key = [0u8; 32];
    public_key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let new = NewDevice {
        id: DeviceId::random(),
        application_id: app,
        user_id: user(owner),
        name: DeviceName::parse("kiosk").unwrap(),
        public_key,
        created_at: now(),
    };
    store.insert_device(&new).await.unwrap()
}

/// Applies `change`, retrying while the store is unavailable (the pool
/// replacing connections the kills broke); whether it applied.
async fn apply_surely(store: &dyn Store, change: &Change) -> bool {
    for _ in 0..50 {
        match store.apply(change).await {
            Ok(applied) => return applied,
            Err(StoreError::Unavailable(_)) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("apply failed: {other}"),
        }
    }
    panic!("the store stayed unavailable");
}

/// What a caller was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Told {
    Applied,
    Unknown,
}

/// How a change reads back, in one snapshot (a statement cut off from its
/// caller may still be committing): the stored version (none if no row)
/// and how many events of its type its transaction has.
async fn stored(conn: &mut PgConnection, change: &Change) -> (Option<i64>, i64) {
    sqlx::query_as(
        "SELECT (SELECT version FROM transactions WHERE id = $1), \
                (SELECT count(*) FROM events WHERE transaction_id = $1 AND type = $2)",
    )
    .bind(change.after.id.as_uuid())
    .bind(change.event.event_type.as_str())
    .fetch_one(&mut *conn)
    .await
    .unwrap()
}

/// The statement of a batch of several changes.
const BATCH: &str = "WITH c AS MATERIALIZED (SELECT * FROM unnest%";

/// Any statement that writes changes: a batch, or a lone change's insert
/// or compare-and-set.
const ANY_WRITE: &str = "WITH %";

/// Ends every backend of this database that is running a statement like
/// `pattern`, polling on `conn` until it has ended at least one or `stop`
/// is set; the connection and how many it ended.
async fn kill_mid_batch(
    mut conn: PgConnection,
    pattern: &'static str,
    stop: Arc<AtomicUsize>,
) -> (PgConnection, usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && stop.load(Ordering::Acquire) == 0 {
        let ended: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND state = 'active' AND query LIKE $1",
        )
        .bind(pattern)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let ended = ended.into_iter().filter(|e| *e).count();
        if ended > 0 {
            return (conn, ended);
        }
    }
    (conn, 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_killed_mid_commit_leaves_each_change_whole_or_absent() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let app = assent_server::admin::create_application(store.as_ref(), "Shop")
        .await
        .unwrap()
        .0
        .id;
    let devices: Vec<Device> = {
        let mut list = Vec::new();
        for n in 0..PER_ROUND / 2 {
            list.push(device(store.as_ref(), app, &format!("user{n}")).await);
        }
        list
    };
    let mut check = PgConnection::connect(&db.url).await.unwrap();
    let mut watcher = Some(PgConnection::connect(&db.url).await.unwrap());
    let mut rng = StdRng::seed_from_u64(21);
    let started = Instant::now();
    let (mut killed_rounds, mut applied) = (0, 0);
    // Callers told the outcome is unknown whose change had committed, and
    // whose had not; the most such callers in one round.
    let (mut unknown_whole, mut unknown_absent, mut most_unknown) = (0, 0, 0);
    for round in 0..ROUNDS {
        assert!(
            started.elapsed() < TEST_LIMIT,
            "round {round} started after {:?}",
            started.elapsed()
        );
        // Half the changes insert new transactions, half scan ones stored
        // before the round.
        let mut changes = Vec::new();
        for (n, device) in devices.iter().enumerate() {
            let (created, otp) = new_otp(app, (round * PER_ROUND + n) as u64);
            assert!(apply_surely(store.as_ref(), &created).await);
            let scan = created
                .after
                .scan(device, &otp, [9; 32], now())
                .expect("a fresh login scans");
            changes.push(scan);
            changes.push(new_otp(app, rng.random()).0);
        }
        let stop = Arc::new(AtomicUsize::new(0));
        // Every other round, the first write statement seen is killed
        // (often a lone change); otherwise only a batch of several.
        let pattern = if round % 2 == 0 { ANY_WRITE } else { BATCH };
        let killer = tokio::spawn(kill_mid_batch(
            watcher.take().unwrap(),
            pattern,
            Arc::clone(&stop),
        ));
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..3))).await;
        let mut tasks = Vec::new();
        for change in &changes {
            let (store, change) = (Arc::clone(&store), change.clone());
            tasks.push(tokio::spawn(async move { store.apply(&change).await }));
        }
        let mut told = Vec::new();
        for task in tasks {
            let outcome = tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("every caller is answered within its bounds")
                .unwrap();
            told.push(match outcome {
                Ok(true) => Told::Applied,
                Ok(false) => panic!("nothing competes with these changes"),
                Err(StoreError::Unavailable(_)) => Told::Unknown,
                Err(other) => panic!("unexpected error: {other}"),
            });
        }
        stop.store(1, Ordering::Release);
        let (conn, ended) = killer.await.unwrap();
        watcher = Some(conn);
        if ended > 0 {
            killed_rounds += 1;
        }
        most_unknown = most_unknown.max(told.iter().filter(|t| **t == Told::Unknown).count());
        for (change, told) in changes.iter().zip(&told) {
            let (version, events) = stored(&mut check, change).await;
            let whole = version == Some(change.after.version) && events == 1;
            let absent = match change.expected {
                None => version.is_none() && events == 0,
                Some(before) => version == Some(before) && events == 0,
            };
            match told {
                Told::Applied => {
                    applied += 1;
                    assert!(
                        whole,
                        "round {round}: an acknowledged change is not stored whole: \
                         version {version:?}, {events} events, change {:?} → {}",
                        change.expected, change.after.version
                    );
                }
                Told::Unknown => {
                    if whole {
                        unknown_whole += 1;
                    } else {
                        unknown_absent += 1;
                    }
                    assert!(
                        whole || absent,
                        "round {round}: an unacknowledged change is half applied: \
                         version {version:?}, {events} events, change {:?} → {}",
                        change.expected,
                        change.after.version
                    );
                }
            }
        }
    }
    eprintln!(
        "{ROUNDS} rounds in {:?}: a batch killed in {killed_rounds}; {applied} changes \
         acknowledged, {} told the outcome is unknown ({unknown_whole} of them had \
         committed); at most {most_unknown} in one round",
        started.elapsed(),
        unknown_whole + unknown_absent
    );
    assert!(
        killed_rounds >= ROUNDS / 2,
        "the watcher caught a batch mid-statement in only {killed_rounds} of {ROUNDS} rounds"
    );
    assert!(
        most_unknown >= 2,
        "no kill caught a batch of more than one change"
    );
}

/// Concurrent changes share batches: with many callers at once, the
/// database sees fewer commits than changes, and every change applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_changes_share_commits() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let app = assent_server::admin::create_application(store.as_ref(), "Shop")
        .await
        .unwrap()
        .0
        .id;
    let mut check = PgConnection::connect(&db.url).await.unwrap();
    let commits = async |conn: &mut PgConnection| -> i64 {
        sqlx::query_scalar(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(conn)
        .await
        .unwrap()
    };
    let _ = sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut check)
        .await;
    let before = commits(&mut check).await;
    let changes: Vec<Change> = (0..200).map(|n| new_otp(app, n).0).collect();
    let mut tasks = Vec::new();
    for change in changes {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move { store.apply(&change).await }));
    }
    for task in tasks {
        assert!(task.await.unwrap().unwrap());
    }
    // Statistics reach the shared view when a backend goes idle.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let _ = sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut check)
        .await;
    let after = commits(&mut check).await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE application_id = $1")
        .bind(app.as_uuid())
        .fetch_one(&mut check)
        .await
        .unwrap();
    assert_eq!(stored, 200, "every change and its event is stored");
    assert!(
        after - before < 100,
        "200 concurrent changes took {} commits",
        after - before
    );
}

/// Callers that go away — before their batch, while their own batch runs
/// as its leader, or just as the lead is handed to them — never stall the
/// others: after each round of cancellations, a new change still applies
/// at once, and every change reads back whole or absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_that_go_away_never_stall_the_others() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let app = assent_server::admin::create_application(store.as_ref(), "Shop")
        .await
        .unwrap()
        .0
        .id;
    let mut check = PgConnection::connect(&db.url).await.unwrap();
    let mut rng = StdRng::seed_from_u64(56);
    for round in 0..30u64 {
        let changes: Vec<Change> = (0..40).map(|n| new_otp(app, round * 100 + n).0).collect();
        let mut tasks = Vec::new();
        for change in &changes {
            let (store, change) = (Arc::clone(&store), change.clone());
            tasks.push(tokio::spawn(async move { store.apply(&change).await }));
        }
        tokio::time::sleep(Duration::from_micros(rng.random_range(0..3000))).await;
        for task in tasks.iter().step_by(2) {
            task.abort();
        }
        for task in tasks {
            match task.await {
                Ok(Ok(applied)) => assert!(applied),
                Ok(Err(StoreError::Unavailable(_))) => {}
                Ok(Err(other)) => panic!("unexpected error: {other}"),
                Err(cancelled) => assert!(cancelled.is_cancelled()),
            }
        }
        let (next, _) = new_otp(app, round * 100 + 99);
        let applied = tokio::time::timeout(Duration::from_secs(5), store.apply(&next))
            .await
            .expect("a change after the cancellations applies without waiting for them");
        assert!(applied.unwrap(), "round {round}");
        for change in &changes {
            let (version, events) = stored(&mut check, change).await;
            assert!(
                (version == Some(1) && events == 1) || (version.is_none() && events == 0),
                "round {round}: half applied: version {version:?}, {events} events"
            );
        }
    }
}

/// The other unknown outcome: the batch committed, but its answer never
/// arrived (the connection is cut right after PostgreSQL answered the
/// statement that carries one chosen change). Its callers are told
/// `UNAVAILABLE`, and their changes are stored whole — so a retry finds
/// them applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_cut_after_its_commit_is_stored_whole_though_unacknowledged() {
    use assent_server::store::{PgLimits, PgStore};
    use assent_tests::fault_proxy::{CutAt, FaultProxy};

    let db = TestDb::create().await;
    db.store().await; // migrated
    let proxy = FaultProxy::start(db.address()).await;
    let store: Arc<dyn Store> = Arc::new(
        PgStore::connect(&proxy.postgres_url(&db.url), PgLimits::default())
            .await
            .unwrap(),
    );
    let app = assent_server::admin::create_application(store.as_ref(), "Shop")
        .await
        .unwrap()
        .0
        .id;
    let mut check = PgConnection::connect(&db.url).await.unwrap();
    let mut cut_in_a_batch = 0;
    for round in 0..10u64 {
        let changes: Vec<Change> = (0..12).map(|n| new_otp(app, round * 100 + n).0).collect();
        let chosen = changes[6].after.id;
        let fired = proxy.cut_connection_on(chosen.as_uuid().as_bytes(), CutAt::AfterReply);
        let mut tasks = Vec::new();
        for change in &changes {
            let (store, change) = (Arc::clone(&store), change.clone());
            tasks.push(tokio::spawn(async move { store.apply(&change).await }));
        }
        let mut unknown = 0;
        for (task, change) in tasks.into_iter().zip(&changes) {
            let told = task.await.unwrap();
            let (version, events) = stored(&mut check, change).await;
            let whole = version == Some(1) && events == 1;
            if change.after.id == chosen {
                assert!(told.is_err(), "round {round}: its answer was cut off");
            }
            match told {
                Ok(applied) => assert!(applied && whole, "round {round}: acknowledged"),
                Err(StoreError::Unavailable(_)) => {
                    unknown += 1;
                    assert!(whole, "round {round}: committed before the cut, so whole");
                }
                Err(other) => panic!("unexpected error: {other}"),
            }
        }
        fired.await.expect("the trap fired");
        if unknown > 1 {
            cut_in_a_batch += 1;
        }
    }
    assert!(
        cut_in_a_batch > 0,
        "no cut caught a batch of several changes"
    );
}
