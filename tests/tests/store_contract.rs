//! One contract for the storage traits, run against both engines: every case
//! below runs once on a fresh PostgreSQL database and once on a fresh SQLite
//! file (`on_both_engines!` at the bottom).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use assent_server::domain::{
    ApplicationId, Context, DeviceId, DeviceName, EnrollmentId, Message, SecretHash, TransactionId,
    TransactionKind, TransactionState as State, UserId,
};
use assent_server::store::{
    ExpiryGuard, NewDevice, NewEnrollment, NewTransaction, Scan, Store, StoreError, StoreResult,
    TransactionRecord, Transition,
};
use chrono::{DateTime, TimeDelta, Utc};

const RACES: usize = 200;

fn hash(byte: u8) -> SecretHash {
    SecretHash::from_slice(&[byte; 32]).unwrap()
}

async fn app(store: &dyn Store, name: &str) -> ApplicationId {
    assent_server::admin::create_application(store, name)
        .await
        .unwrap()
        .0
        .id
}

async fn device(store: &dyn Store, app: ApplicationId, user: &str) -> DeviceId {
    let mut public_key = [0u8; 32];
    public_key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    store
        .insert_device(&NewDevice {
            id: DeviceId::random(),
            application_id: app,
            user_id: user.to_owned(),
            name: DeviceName::parse("kiosk").unwrap(),
            public_key,
            created_at: Utc::now(),
        })
        .await
        .unwrap()
        .id
}

async fn transaction(
    store: &dyn Store,
    app: ApplicationId,
    now: DateTime<Utc>,
) -> TransactionRecord {
    store
        .insert_transaction(&NewTransaction {
            id: TransactionId::random(),
            application_id: app,
            kind: TransactionKind::Otp,
            user_id: None,
            message: Message::parse("Log in?").unwrap(),
            context: Context::default(),
            otp_hash: Some(hash(1)),
            nonce: None,
            number_match: None,
            created_at: now,
            expires_at: now + TimeDelta::seconds(60),
        })
        .await
        .unwrap()
}

fn scan(record: &TransactionRecord, device: DeviceId, now: DateTime<Utc>) -> Scan {
    Scan {
        id: record.id,
        application_id: record.application_id,
        device_id: device,
        user_id: "alice".to_owned(),
        nonce: [7; 32],
        now,
    }
}

fn to(record: &TransactionRecord, state: State, now: DateTime<Utc>) -> Transition {
    Transition {
        id: record.id,
        application_id: record.application_id,
        to: state,
        reason: None,
        bound_device: None,
        bound_user: None,
        signature: None,
        expiry: ExpiryGuard::Unexpired,
        now,
    }
}

async fn event_types(store: &dyn Store, app: ApplicationId, id: TransactionId) -> Vec<String> {
    store
        .events_after(app, 0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.transaction_id == Some(id))
        .map(|e| e.event_type)
        .collect()
}

async fn transitions_follow_the_state_table(db: assent_tests::TestDb) {
    let store: Arc<dyn Store> = db.store().await;
    let store = store.as_ref();
    let now = Utc::now();
    let app = app(store, "Shop").await;
    let dev = device(store, app, "alice").await;
    let record = transaction(store, app, now).await;
    assert_eq!(record.state, State::Pending);
    // A decision before the scan is refused.
    assert!(
        store
            .transition(&to(&record, State::Accepted, now))
            .await
            .unwrap()
            .is_none()
    );
    let scanned = store
        .scan_transaction(&scan(&record, dev, now))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (scanned.state, scanned.device_id),
        (State::Scanned, Some(dev))
    );
    assert_eq!(scanned.user_id.as_deref(), Some("alice"));
    assert!(
        scanned.otp_hash.is_none(),
        "the OTP hash is cleared once used"
    );
    assert!(
        store
            .scan_transaction(&scan(&record, dev, now))
            .await
            .unwrap()
            .is_none()
    );
    let mut accept = to(&record, State::Accepted, now);
    accept.bound_device = Some(DeviceId::random());
    assert!(
        store.transition(&accept).await.unwrap().is_none(),
        "only the bound device decides"
    );
    accept.bound_device = Some(dev);
    accept.signature = Some(vec![9; 64]);
    let accepted = store.transition(&accept).await.unwrap().unwrap();
    assert_eq!(accepted.state, State::Accepted);
    assert_eq!(accepted.decision_signature, Some(vec![9; 64]));
    assert!(accepted.completed_at.is_some());
    assert_eq!(
        event_types(store, app, record.id).await,
        [
            "transaction.created",
            "transaction.scanned",
            "transaction.accepted"
        ]
    );
}

async fn terminal_states_never_change(db: assent_tests::TestDb) {
    let store: Arc<dyn Store> = db.store().await;
    let store = store.as_ref();
    let now = Utc::now();
    let app = app(store, "Shop").await;
    let dev = device(store, app, "alice").await;
    for terminal in [
        State::Cancelled,
        State::Failed,
        State::Accepted,
        State::Denied,
    ] {
        let record = transaction(store, app, now).await;
        store
            .scan_transaction(&scan(&record, dev, now))
            .await
            .unwrap()
            .unwrap();
        let mut end = to(&record, terminal, now);
        end.bound_device = Some(dev);
        let ended = store.transition(&end).await.unwrap().unwrap();
        assert_eq!(ended.state, terminal);
        for next in [
            State::Scanned,
            State::Accepted,
            State::Denied,
            State::Cancelled,
            State::Failed,
        ] {
            let mut change = to(&record, next, now);
            change.bound_device = Some(dev);
            change.expiry = ExpiryGuard::Any;
            assert!(
                store.transition(&change).await.unwrap().is_none(),
                "{terminal:?} → {next:?}"
            );
        }
        let mut expire = to(&record, State::Expired, now + TimeDelta::hours(1));
        expire.expiry = ExpiryGuard::Expired;
        assert!(store.transition(&expire).await.unwrap().is_none());
        let stored = store
            .find_transaction(app, record.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.state, terminal);
    }
}

async fn concurrent_scans_have_exactly_one_winner(db: assent_tests::TestDb) {
    let store: Arc<dyn Store> = db.store().await;
    let now = Utc::now();
    let app = app(store.as_ref(), "Shop").await;
    let first = device(store.as_ref(), app, "alice").await;
    let second = device(store.as_ref(), app, "alice").await;
    for _ in 0..RACES {
        let record = transaction(store.as_ref(), app, now).await;
        let (a, b) = (scan(&record, first, now), scan(&record, second, now));
        let (sa, sb) = (Arc::clone(&store), Arc::clone(&store));
        let ta = tokio::spawn(async move { sa.scan_transaction(&a).await });
        let tb = tokio::spawn(async move { sb.scan_transaction(&b).await });
        let wins = [ta.await.unwrap().unwrap(), tb.await.unwrap().unwrap()]
            .iter()
            .filter(|r| r.is_some())
            .count();
        assert_eq!(wins, 1);
        assert_eq!(event_types(store.as_ref(), app, record.id).await.len(), 2);
    }
}

async fn a_decision_racing_a_cancellation_has_exactly_one_winner(db: assent_tests::TestDb) {
    let store: Arc<dyn Store> = db.store().await;
    let now = Utc::now();
    let app = app(store.as_ref(), "Shop").await;
    let dev = device(store.as_ref(), app, "alice").await;
    for _ in 0..RACES {
        let record = transaction(store.as_ref(), app, now).await;
        store
            .scan_transaction(&scan(&record, dev, now))
            .await
            .unwrap()
            .unwrap();
        let mut accept = to(&record, State::Accepted, now);
        accept.bound_device = Some(dev);
        let cancel = to(&record, State::Cancelled, now);
        let (sa, sb) = (Arc::clone(&store), Arc::clone(&store));
        let ta = tokio::spawn(async move { sa.transition(&accept).await });
        let tb = tokio::spawn(async move { sb.transition(&cancel).await });
        let (a, b) = (ta.await.unwrap().unwrap(), tb.await.unwrap().unwrap());
        assert_eq!(usize::from(a.is_some()) + usize::from(b.is_some()), 1);
        let final_state = store
            .find_transaction(app, record.id)
            .await
            .unwrap()
            .unwrap()
            .state;
        assert_eq!(
            final_state,
            if a.is_some() {
                State::Accepted
            } else {
                State::Cancelled
            }
        );
        assert_eq!(event_types(store.as_ref(), app, record.id).await.len(), 3);
    }
}

async fn cursors_grow_and_incremental_reads_miss_nothing(db: assent_tests::TestDb) {
    let store: Arc<dyn Store> = db.store().await;
    let now = Utc::now();
    let app = app(store.as_ref(), "Shop").await;
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..100 {
                    ids.push(transaction(store.as_ref(), app, now).await.id);
                }
                ids
            })
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut cursor = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while seen.len() < 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "reader stalled at {}",
            seen.len()
        );
        for event in store.events_after(app, cursor, 7).await.unwrap() {
            assert!(event.cursor > cursor);
            cursor = event.cursor;
            assert!(seen.insert(event.transaction_id.unwrap()), "duplicate");
        }
    }
    let mut written = BTreeSet::new();
    for writer in writers {
        written.extend(writer.await.unwrap());
    }
    assert_eq!(
        seen, written,
        "an incremental reader saw every event exactly once"
    );
}

async fn expiry_guards_and_overdue_listing(db: assent_tests::TestDb) {
    let store: Arc<dyn Store> = db.store().await;
    let store = store.as_ref();
    let now = Utc::now();
    let app = app(store, "Shop").await;
    let dev = device(store, app, "alice").await;
    let record = transaction(store, app, now).await;
    let later = record.expires_at + TimeDelta::milliseconds(1);
    assert!(
        store
            .scan_transaction(&scan(&record, dev, later))
            .await
            .unwrap()
            .is_none()
    );
    let overdue = store.overdue_transactions(now, 100).await.unwrap();
    assert!(!overdue.contains(&(app, record.id)));
    let overdue = store.overdue_transactions(later, 100).await.unwrap();
    assert!(overdue.contains(&(app, record.id)));
    assert!(
        store
            .transition(&to(&record, State::Cancelled, later))
            .await
            .unwrap()
            .is_none()
    );
    let mut early = to(&record, State::Expired, now);
    early.expiry = ExpiryGuard::Expired;
    assert!(
        store.transition(&early).await.unwrap().is_none(),
        "not expired yet"
    );
    let mut expire = to(&record, State::Expired, later);
    expire.expiry = ExpiryGuard::Expired;
    assert_eq!(
        store.transition(&expire).await.unwrap().unwrap().state,
        State::Expired
    );
    assert!(
        !store
            .overdue_transactions(later, 100)
            .await
            .unwrap()
            .contains(&(app, record.id))
    );

    let open = transaction(store, app, now).await;
    store
        .scan_transaction(&scan(&open, dev, now))
        .await
        .unwrap()
        .unwrap();
    let record = store.find_device(dev).await.unwrap().unwrap();
    assert_eq!(
        store.open_confirmations(&record, now).await.unwrap().len(),
        1
    );
    assert!(
        store
            .open_confirmations(&record, later)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn push_record(
    store: &dyn Store,
    app: ApplicationId,
    user: &str,
    now: DateTime<Utc>,
) -> StoreResult<TransactionRecord> {
    store
        .insert_transaction(&NewTransaction {
            id: TransactionId::random(),
            application_id: app,
            kind: TransactionKind::Push,
            user_id: Some(UserId::parse(user).unwrap()),
            message: Message::parse("Log in?").unwrap(),
            context: Context::default(),
            otp_hash: None,
            nonce: Some([5; 32]),
            number_match: None,
            created_at: now,
            expires_at: now + TimeDelta::seconds(60),
        })
        .await
}

async fn pushes_are_claimed_by_one_device_of_their_user_and_limited_to_one_open(
    db: assent_tests::TestDb,
) {
    let store: Arc<dyn Store> = db.store().await;
    let store = store.as_ref();
    let now = Utc::now();
    let app = app(store, "Shop").await;
    let alice_1 = device(store, app, "alice").await;
    let alice_2 = device(store, app, "alice").await;
    let bob = device(store, app, "bob").await;
    let record = push_record(store, app, "alice", now).await.unwrap();
    assert!(matches!(
        push_record(store, app, "alice", now).await,
        Err(StoreError::OpenPushExists)
    ));
    assert!(
        push_record(store, app, "bob", now).await.is_ok(),
        "other users are independent"
    );
    let alice = UserId::parse("alice").unwrap();
    assert_eq!(
        store.open_push(app, &alice).await.unwrap().map(|r| r.id),
        Some(record.id)
    );
    let alice_device = store.find_device(alice_1).await.unwrap().unwrap();
    let bob_device = store.find_device(bob).await.unwrap().unwrap();
    assert!(
        store
            .open_confirmations(&alice_device, now)
            .await
            .unwrap()
            .iter()
            .any(|r| r.id == record.id)
    );
    assert!(
        !store
            .open_confirmations(&bob_device, now)
            .await
            .unwrap()
            .iter()
            .any(|r| r.id == record.id)
    );

    let mut decide = to(&record, State::Denied, now);
    assert!(
        store.transition(&decide).await.unwrap().is_none(),
        "a decision needs a device"
    );
    decide.bound_device = Some(bob);
    decide.bound_user = Some("bob".to_owned());
    assert!(
        store.transition(&decide).await.unwrap().is_none(),
        "bob cannot decide alice's push"
    );
    decide.bound_device = Some(alice_1);
    decide.bound_user = Some("alice".to_owned());
    decide.reason = Some("not_me".to_owned());
    let denied = store.transition(&decide).await.unwrap().unwrap();
    assert_eq!(
        denied.device_id,
        Some(alice_1),
        "the deciding device claims the push"
    );
    decide.bound_device = Some(alice_2);
    assert!(
        store.transition(&decide).await.unwrap().is_none(),
        "one winner"
    );
    let fraud = store
        .events_after(app, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event_type == "transaction.denied")
        .unwrap();
    assert!(fraud.fraud_reported);
    let reported = store.last_fraud_report(app, &alice).await.unwrap();
    assert_eq!(
        reported.map(|t| t.timestamp_micros()),
        Some(now.timestamp_micros())
    );
    assert!(store.open_push(app, &alice).await.unwrap().is_none());
    let since = now - TimeDelta::minutes(10);
    assert_eq!(
        store
            .count_unanswered_pushes(app, &alice, since)
            .await
            .unwrap(),
        1
    );
    let accepted = push_record(store, app, "alice", now + TimeDelta::seconds(1))
        .await
        .unwrap();
    let mut accept = to(&accepted, State::Accepted, now + TimeDelta::seconds(2));
    accept.bound_device = Some(alice_2);
    store.transition(&accept).await.unwrap().unwrap();
    assert_eq!(
        store
            .count_unanswered_pushes(app, &alice, since)
            .await
            .unwrap(),
        0,
        "an accepted push resets the count"
    );
}

async fn applications_are_isolated(db: assent_tests::TestDb) {
    let store: Arc<dyn Store> = db.store().await;
    let store = store.as_ref();
    let now = Utc::now();
    let shop_a = app(store, "A").await;
    let shop_b = app(store, "B").await;
    let dev_a = device(store, shop_a, "alice").await;
    let record = transaction(store, shop_a, now).await;
    assert!(
        store
            .find_transaction(shop_b, record.id)
            .await
            .unwrap()
            .is_none()
    );
    let mut foreign_scan = scan(&record, dev_a, now);
    foreign_scan.application_id = shop_b;
    assert!(
        store
            .scan_transaction(&foreign_scan)
            .await
            .unwrap()
            .is_none()
    );
    let mut foreign_cancel = to(&record, State::Cancelled, now);
    foreign_cancel.application_id = shop_b;
    assert!(store.transition(&foreign_cancel).await.unwrap().is_none());
    assert!(
        store
            .revoke_device(shop_b, dev_a, now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.list_devices(shop_b, None).await.unwrap().is_empty());
    assert!(
        store
            .events_after(shop_b, 0, 1000)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.list_devices(shop_a, None).await.unwrap().len(), 1);
    let alice = UserId::parse("alice").unwrap();
    let bob = UserId::parse("bob").unwrap();
    assert_eq!(
        store
            .list_devices(shop_a, Some(&alice))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .list_devices(shop_a, Some(&bob))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn retention_purges_old_events_and_records_the_horizon(db: assent_tests::TestDb) {
    let store: Arc<dyn Store> = db.store().await;
    let store = store.as_ref();
    let app = app(store, "Shop").await;
    let old = Utc::now() - TimeDelta::days(8);
    let old_tx = transaction(store, app, old).await;
    let new_tx = transaction(store, app, Utc::now()).await;
    assert_eq!(store.purged_through().await.unwrap(), 0);
    let deleted = store
        .purge(Utc::now() - TimeDelta::days(7), Utc::now())
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let remaining = store.events_after(app, 0, 100).await.unwrap();
    assert_eq!(remaining.len(), 1);
    assert_eq!(remaining[0].transaction_id, Some(new_tx.id));
    let horizon = store.purged_through().await.unwrap();
    assert!(horizon > 0 && horizon < remaining[0].cursor);
    assert!(
        store
            .find_transaction(app, old_tx.id)
            .await
            .unwrap()
            .is_some()
    );
}

async fn enrollments_are_single_use_and_keys_unique(db: assent_tests::TestDb) {
    let store: Arc<dyn Store> = db.store().await;
    let store = store.as_ref();
    let now = Utc::now();
    let app = app(store, "Shop").await;
    let id = EnrollmentId::random();
    store
        .create_enrollment(&NewEnrollment {
            id,
            application_id: app,
            user_id: UserId::parse("alice").unwrap(),
            secret_hash: hash(3),
            created_at: now,
            expires_at: now + TimeDelta::minutes(10),
        })
        .await
        .unwrap();
    let consumed = store.consume_enrollment(id, now).await.unwrap().unwrap();
    assert_eq!(
        (consumed.application_id, consumed.user_id.as_str()),
        (app, "alice")
    );
    assert!(store.consume_enrollment(id, now).await.unwrap().is_none());

    let new_device = NewDevice {
        id: DeviceId::random(),
        application_id: app,
        user_id: "alice".to_owned(),
        name: DeviceName::parse("kiosk").unwrap(),
        public_key: [42; 32],
        created_at: now,
    };
    store.insert_device(&new_device).await.unwrap();
    let duplicate = NewDevice {
        id: DeviceId::random(),
        ..new_device
    };
    assert!(matches!(
        store.insert_device(&duplicate).await,
        Err(StoreError::DuplicatePublicKey)
    ));
}

async fn revocation_fails_open_confirmations_once(db: assent_tests::TestDb) {
    let store: Arc<dyn Store> = db.store().await;
    let store = store.as_ref();
    let now = Utc::now();
    let app = app(store, "Shop").await;
    let dev = device(store, app, "alice").await;
    let record = transaction(store, app, now).await;
    store
        .scan_transaction(&scan(&record, dev, now))
        .await
        .unwrap()
        .unwrap();
    let revocation = store.revoke_device(app, dev, now).await.unwrap().unwrap();
    assert!(revocation.device.is_revoked());
    assert_eq!(revocation.failed.len(), 1);
    assert_eq!(
        revocation.failed[0].reason.as_deref(),
        Some("device_revoked")
    );
    let again = store.revoke_device(app, dev, now).await.unwrap().unwrap();
    assert!(
        again.failed.is_empty(),
        "a second revocation changes nothing"
    );
    let revoked_events = store
        .events_after(app, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == "device.revoked")
        .count();
    assert_eq!(revoked_events, 1);
    let fresh = transaction(store, app, now).await;
    assert!(
        store
            .scan_transaction(&scan(&fresh, dev, now))
            .await
            .unwrap()
            .is_none(),
        "a revoked device cannot scan"
    );
}

async fn otp_failures_are_counted_in_their_window(db: assent_tests::TestDb) {
    let store: Arc<dyn Store> = db.store().await;
    let store = store.as_ref();
    let now = Utc::now();
    let app = app(store, "Shop").await;
    let dev = device(store, app, "alice").await;
    for minutes in [10, 4, 1] {
        store
            .record_otp_failure(dev, now - TimeDelta::minutes(minutes))
            .await
            .unwrap();
    }
    let count = store
        .count_otp_failures(dev, now - TimeDelta::minutes(5))
        .await
        .unwrap();
    assert_eq!(count, 2);
}

assent_tests::on_both_engines!(
    transitions_follow_the_state_table,
    terminal_states_never_change,
    concurrent_scans_have_exactly_one_winner,
    a_decision_racing_a_cancellation_has_exactly_one_winner,
    cursors_grow_and_incremental_reads_miss_nothing,
    expiry_guards_and_overdue_listing,
    applications_are_isolated,
    retention_purges_old_events_and_records_the_horizon,
    enrollments_are_single_use_and_keys_unique,
    revocation_fails_open_confirmations_once,
    otp_failures_are_counted_in_their_window,
    pushes_are_claimed_by_one_device_of_their_user_and_limited_to_one_open,
);
