//! One contract for the storage traits, run against both engines: every case
//! below runs once on a fresh PostgreSQL database and once on a fresh SQLite
//! file (`on_both_engines!` at the bottom).
//!
//! The store only applies changes the domain decided, so every write here is
//! built by the aggregate (`Transaction::create_otp`, `scan`, `decide`,
//! `cancel`, `expire`, `Device::revoke`) and then applied; the cases check
//! what the store itself promises: the compare-and-set, the guards at commit
//! time, atomic event appends, tenant isolation, and the reads.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use EventType::{
    DeviceEnrolled, DeviceRevoked, TransactionCreated as Created, TransactionScanned as Scanned,
};
use assent_proto::signing::SignedVerdict;
use assent_server::domain::push::{NumberMatch, UnansweredPushes};
use assent_server::domain::rate::StrikeWindow;
use assent_server::domain::transaction::{Decision, NewOtpTransaction, NewPushTransaction};
use assent_server::domain::{
    ApplicationId, Change, Context, DenyReason, Device, DeviceId, DeviceName, EnrollmentId,
    EventType, Message, NewDevice, Otp, Reason, Revocation, SecretHash, Transaction, TransactionId,
    TransactionState as State, UserId,
};
use assent_server::store::{EventRecord, NewEnrollment, OtpLookup, Reservation, Store, StoreError};
use assent_tests::TestDb;
use chrono::{DateTime, TimeDelta, Utc};
use rand::SeedableRng;
use rand::rngs::StdRng;

const RACES: usize = 200;

/// The OTP strike window the reservation cases use.
const FIVE_MINUTES: Duration = Duration::from_secs(300);

type Time = DateTime<Utc>;

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn seconds(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

/// Two facts shown with every login, so the context map round-trips.
fn context() -> Context {
    let pairs = [("city", "Zürich"), ("ip", "203.0.113.7")];
    Context::parse(pairs.map(|(k, v)| (k.to_owned(), v.to_owned())).into()).unwrap()
}

/// A new OTP login (not applied yet) and its OTP.
fn new_otp(app: ApplicationId, owner: Option<&str>, at: Time) -> (Change, Otp) {
    let otp = Otp::generate(&mut StdRng::seed_from_u64(7), TransactionId::random());
    let new = NewOtpTransaction {
        id: otp.id(),
        application_id: app,
        user_id: owner.map(user),
        message: Message::parse("Log in?").unwrap(),
        context: context(),
        otp_hash: otp.hash(),
        ttl: Duration::from_secs(60),
        binding: None,
    };
    (Transaction::create_otp(new, at), otp)
}

/// A new push to `owner` (not applied yet).
fn new_push(app: ApplicationId, owner: &str, numbers: Option<NumberMatch>, at: Time) -> Change {
    let new = NewPushTransaction {
        id: TransactionId::random(),
        application_id: app,
        user_id: user(owner),
        message: Message::parse("Log in?").unwrap(),
        context: context(),
        nonce: [5; 32],
        number_match: numbers,
        ttl: Duration::from_secs(60),
        binding: None,
    };
    Transaction::create_push(new, at)
}

fn accept() -> Decision {
    Decision {
        verdict: SignedVerdict::Accept,
        reason: None,
        number: None,
        signature: [1; 64],
    }
}

fn deny(reason: DenyReason) -> Decision {
    Decision {
        verdict: SignedVerdict::Deny,
        reason: Some(reason),
        ..accept()
    }
}

/// The device's answer; the store does not check signatures.
fn decide(t: &Transaction, device: &Device, decision: Decision, at: Time) -> Change {
    t.decide(device, &decision, |_| true, at).unwrap()
}

/// What the change's event must read back as, at the cursor it was given.
fn recorded(change: &Change, at: &EventRecord) -> EventRecord {
    let event = &change.event;
    EventRecord {
        cursor: at.cursor,
        event_type: event.event_type,
        transaction_id: event.transaction_id,
        user_id: event.user_id.clone(),
        device_id: event.device_id,
        reason: event.reason,
        fraud_reported: event.fraud_reported,
        occurred_at: event.at,
        binding: change.after.binding.clone(),
    }
}

async fn create_app(store: &dyn Store, name: &str) -> ApplicationId {
    let created = assent_server::admin::create_application(store, name).await;
    created.unwrap().0.id
}

fn ids(list: Vec<Transaction>) -> BTreeSet<TransactionId> {
    list.into_iter().map(|t| t.id).collect()
}

/// A migrated store with one application, and the time the case starts at
/// (in microseconds, the precision both engines store, so what is read back
/// compares equal to what was decided).
struct Case {
    store: Arc<dyn Store>,
    app: ApplicationId,
    at: Time,
}

impl Case {
    async fn new(db: &TestDb) -> Self {
        let store = db.store().await;
        let app = create_app(store.as_ref(), "Shop").await;
        let at = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
        Self { store, app, at }
    }

    fn s(&self) -> &dyn Store {
        self.store.as_ref()
    }

    async fn device_in(&self, app: ApplicationId, owner: &str) -> Device {
        let mut public_key = [0u8; 32];
        public_key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        let new = NewDevice {
            id: DeviceId::random(),
            application_id: app,
            user_id: user(owner),
            name: DeviceName::parse("kiosk").unwrap(),
            public_key,
            created_at: self.at,
        };
        self.s().insert_device(&new).await.unwrap()
    }

    async fn device(&self, owner: &str) -> Device {
        self.device_in(self.app, owner).await
    }

    async fn apply(&self, change: &Change) -> bool {
        self.s().apply(change).await.unwrap()
    }

    /// A stored pending OTP login created at `at`, and its OTP.
    async fn login_at(&self, at: Time) -> (Transaction, Otp) {
        let (created, otp) = new_otp(self.app, None, at);
        assert!(self.apply(&created).await);
        (created.after, otp)
    }

    async fn login(&self) -> (Transaction, Otp) {
        self.login_at(self.at).await
    }

    /// A stored pending push to `owner` created at `at`.
    async fn push(&self, owner: &str, at: Time) -> Transaction {
        let created = new_push(self.app, owner, None, at);
        assert!(self.apply(&created).await);
        created.after
    }

    /// A stored OTP login scanned by `device`.
    async fn scanned(&self, device: &Device) -> Transaction {
        let (pending, otp) = self.login().await;
        let scan = pending.scan(device, &otp, [9; 32], self.at).unwrap();
        assert!(self.apply(&scan).await);
        scan.after
    }

    async fn find(&self, app: ApplicationId, id: TransactionId) -> Option<Transaction> {
        self.s().find_transaction(app, id).await.unwrap()
    }

    async fn stored(&self, t: &Transaction) -> Transaction {
        self.find(t.application_id, t.id).await.unwrap()
    }

    /// Asserts the store holds `t` exactly as given.
    async fn holds(&self, t: &Transaction) {
        assert_eq!(&self.stored(t).await, t);
    }

    async fn find_device(&self, id: DeviceId) -> Device {
        self.s().find_device(id).await.unwrap().unwrap()
    }

    async fn revoke(&self, revocation: &Revocation) -> bool {
        self.s().apply_revocation(revocation).await.unwrap()
    }

    async fn events(&self, app: ApplicationId) -> Vec<EventRecord> {
        self.s().events_after(app, 0, 100_000).await.unwrap()
    }

    async fn events_of(&self, t: &Transaction) -> Vec<EventType> {
        let log = self.events(t.application_id).await;
        let mine = log.into_iter().filter(|e| e.transaction_id == Some(t.id));
        mine.map(|e| e.event_type).collect()
    }

    /// Applies both changes concurrently; which of them applied.
    async fn race(&self, a: &Change, b: &Change) -> [bool; 2] {
        let (sa, sb) = (Arc::clone(&self.store), Arc::clone(&self.store));
        let (a, b) = (a.clone(), b.clone());
        let ta = tokio::spawn(async move { sa.apply(&a).await });
        let tb = tokio::spawn(async move { sb.apply(&b).await });
        let won = [ta.await.unwrap().unwrap(), tb.await.unwrap().unwrap()];
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "one winner: {won:?}");
        won
    }
}

async fn applied_changes_read_back_as_decided_with_their_events(db: TestDb) {
    let c = Case::new(&db).await;
    let phone = c.device("alice").await;
    let (created, otp) = new_otp(c.app, Some("alice"), c.at);
    assert_eq!(created.after.version, 1);
    assert!(c.apply(&created).await);
    c.holds(&created.after).await;
    // Bound to the device, with its nonce, without the OTP hash, version 2.
    let scan = created.after.scan(&phone, &otp, [9; 32], c.at).unwrap();
    assert!(c.apply(&scan).await);
    c.holds(&scan.after).await;
    // Signed, completed, version 3.
    let accepted = decide(&scan.after, &phone, accept(), c.at + seconds(1));
    assert!(c.apply(&accepted).await);
    c.holds(&accepted.after).await;

    let numbers = NumberMatch {
        number: 45,
        choices: [12, 45, 78],
    };
    let pushed = new_push(c.app, "alice", Some(numbers), c.at);
    assert!(c.apply(&pushed).await);
    let read = c.stored(&pushed.after).await;
    assert_eq!(read, pushed.after);
    let numbers = (read.match_number, read.number_choices, read.nonce);
    assert_eq!(numbers, (Some(45), vec![12, 45, 78], Some([5; 32])));
    assert_eq!(read.context, context().into_pairs());
    assert_eq!((read.version, read.state), (1, State::Pending));

    let log = c.events(c.app).await;
    let [enrolled, rest @ ..] = log.as_slice() else {
        panic!("the enrollment's event comes first");
    };
    assert_eq!(enrolled.event_type, DeviceEnrolled);
    let changes = [&created, &scan, &accepted, &pushed];
    let expected: Vec<_> = changes
        .iter()
        .zip(rest)
        .map(|(c, e)| recorded(c, e))
        .collect();
    // One event per applied change, as decided.
    assert_eq!(rest, expected.as_slice());
}

async fn a_change_decided_on_a_stale_version_changes_nothing(db: TestDb) {
    let c = Case::new(&db).await;
    let (phone, tablet) = (c.device("alice").await, c.device("alice").await);
    let (t, otp) = c.login().await;
    let by_phone = t.scan(&phone, &otp, [1; 32], c.at).unwrap();
    let by_tablet = t.scan(&tablet, &otp, [2; 32], c.at).unwrap();
    let cancel = t.cancel(c.at).unwrap();
    assert!(c.apply(&by_phone).await);
    // Both decided on version 1; the store holds version 2.
    assert!(!c.apply(&by_tablet).await, "second scan");
    assert!(!c.apply(&cancel).await, "stale cancel");
    let mut ahead = by_phone.after.cancel(c.at).unwrap();
    ahead.expected = Some(3);
    assert!(!c.apply(&ahead).await, "a version never stored");
    c.holds(&by_phone.after).await;
    assert_eq!(c.events_of(&t).await, [Created, Scanned]);
}

async fn concurrent_scans_of_one_version_have_exactly_one_winner(db: TestDb) {
    let c = Case::new(&db).await;
    let (phone, tablet) = (c.device("alice").await, c.device("alice").await);
    for _ in 0..RACES {
        let (t, otp) = c.login().await;
        let a = t.scan(&phone, &otp, [1; 32], c.at).unwrap();
        let b = t.scan(&tablet, &otp, [2; 32], c.at).unwrap();
        let won = c.race(&a, &b).await;
        c.holds(&(if won[0] { a } else { b }).after).await;
        assert_eq!(c.events_of(&t).await, [Created, Scanned]);
    }
}

async fn a_decision_racing_a_cancellation_has_exactly_one_winner(db: TestDb) {
    let c = Case::new(&db).await;
    let phone = c.device("alice").await;
    for _ in 0..RACES {
        let t = c.scanned(&phone).await;
        let accepted = decide(&t, &phone, accept(), c.at);
        let cancel = t.cancel(c.at).unwrap();
        let won = c.race(&accepted, &cancel).await;
        let winner = if won[0] { accepted } else { cancel };
        c.holds(&winner.after).await;
        let outcome = winner.event.event_type;
        assert_eq!(c.events_of(&t).await, [Created, Scanned, outcome]);
    }
}

async fn guards_fail_a_change_at_commit_time(db: TestDb) {
    let c = Case::new(&db).await;
    let other = create_app(c.s(), "Other").await;

    // The device was revoked after the scan and the decision were decided.
    let phone = c.device("alice").await;
    let (t, otp) = c.login().await;
    let scan = t.scan(&phone, &otp, [9; 32], c.at).unwrap();
    let pushed = c.push("alice", c.at).await;
    let answer = decide(&pushed, &phone, accept(), c.at);
    let held = c.s().held_by(phone.id).await.unwrap();
    assert!(c.revoke(&phone.revoke(&held, c.at).unwrap()).await);
    assert!(!c.apply(&scan).await, "scan by a revoked device");
    assert!(!c.apply(&answer).await, "decision by a revoked device");
    c.holds(&t).await;
    c.holds(&pushed).await;

    // The transaction has expired by the time the change commits.
    let tablet = c.device("alice").await;
    let (t, otp) = c.login().await;
    let mut late = t.scan(&tablet, &otp, [9; 32], c.at).unwrap();
    for unexpired_at in [t.expires_at, t.expires_at + TimeDelta::milliseconds(1)] {
        late.guard.unexpired_at = Some(unexpired_at);
        assert!(!c.apply(&late).await, "scan at {unexpired_at}");
    }
    let mut cancel = t.cancel(c.at).unwrap();
    cancel.guard.unexpired_at = Some(t.expires_at);
    assert!(!c.apply(&cancel).await, "cancel at the expiry");
    c.holds(&t).await;
    late.guard.unexpired_at = Some(t.expires_at - TimeDelta::milliseconds(1));
    assert!(c.apply(&late).await, "just before the expiry");

    // The device belongs to another application.
    let foreign = c.device_in(other, "alice").await;
    let mut disguised = foreign.clone();
    disguised.application_id = c.app;
    let (t, otp) = c.login().await;
    let scan = t.scan(&disguised, &otp, [9; 32], c.at).unwrap();
    assert_eq!(scan.guard.device_unrevoked, Some(foreign.id));
    assert!(!c.apply(&scan).await, "another application's device");
    c.holds(&t).await;
    let own = t.scan(&tablet, &otp, [9; 32], c.at).unwrap();
    assert!(c.apply(&own).await);

    // Refused changes appended nothing.
    let log = c.events(c.app).await;
    let scans = log.iter().filter(|e| e.event_type == Scanned);
    let by: Vec<_> = scans.map(|e| e.device_id).collect();
    assert_eq!(by, [Some(tablet.id); 2]);
}

async fn applications_are_isolated(db: TestDb) {
    let c = Case::new(&db).await;
    let (shop_a, shop_b) = (c.app, create_app(c.s(), "B").await);
    let phone = c.device("alice").await;
    let (t, _) = c.login().await;
    assert_eq!(c.find(shop_b, t.id).await, None);
    assert_eq!(c.find(shop_a, t.id).await, Some(t.clone()));

    let mut foreign_cancel = t.cancel(c.at).unwrap();
    foreign_cancel.after.application_id = shop_b;
    foreign_cancel.event.application_id = shop_b;
    assert!(!c.apply(&foreign_cancel).await);
    c.holds(&t).await;

    let mut foreign_revocation = phone.revoke(&[], c.at).unwrap();
    foreign_revocation.application_id = shop_b;
    foreign_revocation.event.application_id = shop_b;
    assert!(!c.revoke(&foreign_revocation).await);
    let unchanged = c.find_device(phone.id).await;
    assert!(!unchanged.is_revoked());

    let alice = user("alice");
    let pushed = c.push("alice", c.at).await;
    assert_eq!(c.s().open_push(shop_b, &alice).await.unwrap(), None);
    // One open push per user of each application.
    let pushed_b = new_push(shop_b, "alice", None, c.at);
    assert!(c.apply(&pushed_b).await);
    assert_eq!(c.s().open_push(shop_a, &alice).await.unwrap(), Some(pushed));

    let seen_by_a = c.events(shop_a).await;
    let seen_by_a: Vec<_> = seen_by_a.iter().map(|e| e.event_type).collect();
    assert_eq!(seen_by_a, [DeviceEnrolled, Created, Created]);
    let seen_by_b = c.events(shop_b).await;
    let seen_by_b: Vec<_> = seen_by_b.iter().map(|e| e.transaction_id).collect();
    assert_eq!(seen_by_b, [Some(pushed_b.after.id)]);
    let devices = |app, who| c.s().list_devices(app, who);
    assert_eq!(devices(shop_b, None).await.unwrap(), []);
    assert_eq!(devices(shop_a, Some(&alice)).await.unwrap(), [unchanged]);
    assert_eq!(devices(shop_a, Some(&user("bob"))).await.unwrap(), []);
}

async fn revocation_fails_every_held_transaction_once(db: TestDb) {
    let c = Case::new(&db).await;
    let (phone, tablet) = (c.device("alice").await, c.device("alice").await);
    let (first, second) = (c.scanned(&phone).await, c.scanned(&phone).await);
    let elsewhere = c.scanned(&tablet).await;
    let pushed = c.push("alice", c.at).await;
    let mut held = c.s().held_by(phone.id).await.unwrap();
    assert_eq!(ids(held.clone()), BTreeSet::from([first.id, second.id]));
    held.reverse(); // a set: the order it was read in does not matter
    let cursor = c.events(c.app).await.last().unwrap().cursor;

    let later = c.at + seconds(1);
    let revocation = phone.revoke(&held, later).unwrap();
    assert!(c.revoke(&revocation).await);
    let revoked = c.find_device(phone.id).await;
    assert_eq!(revoked.revoked_at, Some(later));
    assert_eq!(revocation.failures.len(), 2);
    for failure in &revocation.failures {
        c.holds(&failure.after).await;
        let outcome = (failure.after.state, failure.after.reason);
        assert_eq!(outcome, (State::Failed, Some(Reason::DeviceRevoked)));
    }
    c.holds(&elsewhere).await;
    c.holds(&pushed).await;
    assert_eq!(c.s().held_by(phone.id).await.unwrap(), []);
    let appended = c.s().events_after(c.app, cursor, 100).await.unwrap();
    let summary: Vec<_> = appended.iter().map(|e| (e.event_type, e.reason)).collect();
    let failed = (EventType::TransactionFailed, Some(Reason::DeviceRevoked));
    assert_eq!(summary, [(DeviceRevoked, None), failed, failed]);
    assert_eq!(appended[0].device_id, Some(phone.id));

    assert!(revoked.revoke(&[], later).is_none(), "revoked once");
    assert!(!c.revoke(&revocation).await, "the store revokes once too");
    let cursor = appended.last().unwrap().cursor;
    let after = c.s().events_after(c.app, cursor, 100).await.unwrap();
    assert_eq!(after, []);
}

async fn a_revocation_decided_on_a_stale_held_set_changes_nothing(db: TestDb) {
    let c = Case::new(&db).await;
    let phone = c.device("alice").await;
    let unaware = phone.revoke(&[], c.at).unwrap();
    let bound = c.scanned(&phone).await;
    assert!(!c.revoke(&unaware).await, "a transaction was bound since");

    let held = c.s().held_by(phone.id).await.unwrap();
    assert_eq!(held, std::slice::from_ref(&bound));
    let outdated = phone.revoke(&held, c.at).unwrap();
    let cancel = bound.cancel(c.at).unwrap();
    assert!(c.apply(&cancel).await);
    assert!(!c.revoke(&outdated).await, "the held one ended since");

    assert!(!c.find_device(phone.id).await.is_revoked());
    c.holds(&cancel.after).await;
    let log = c.events(c.app).await;
    assert!(log.iter().all(|e| e.event_type != DeviceRevoked));
    let current = c.s().held_by(phone.id).await.unwrap();
    assert!(c.revoke(&phone.revoke(&current, c.at).unwrap()).await);
}

async fn cursors_grow_and_incremental_reads_miss_nothing(db: TestDb) {
    let c = Arc::new(Case::new(&db).await);
    let writer = |c: Arc<Case>| async move {
        let mut ids = Vec::new();
        for _ in 0..100 {
            ids.push(c.login().await.0.id);
        }
        ids
    };
    let writers = [0, 1].map(|_| tokio::spawn(writer(Arc::clone(&c))));
    let mut seen = BTreeSet::new();
    let mut cursor = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < 200 {
        assert!(std::time::Instant::now() < deadline, "stalled");
        for event in c.s().events_after(c.app, cursor, 7).await.unwrap() {
            assert!(event.cursor > cursor);
            cursor = event.cursor;
            assert!(seen.insert(event.transaction_id.unwrap()), "duplicate");
        }
    }
    let mut written = BTreeSet::new();
    for writer in writers {
        written.extend(writer.await.unwrap());
    }
    // An incremental reader saw every event exactly once.
    assert_eq!(seen, written);
}

async fn retention_purges_old_events_and_records_the_horizon(db: TestDb) {
    let c = Case::new(&db).await;
    let (old_tx, _) = c.login_at(c.at - TimeDelta::days(8)).await;
    let (new_tx, _) = c.login().await;
    assert_eq!(c.s().purged_through().await.unwrap(), 0);
    let events_before = c.at - TimeDelta::days(7);
    let purge = || c.s().purge(events_before);
    assert_eq!(purge().await.unwrap(), 1);
    // The new login's event remains.
    let remaining = c.events(c.app).await;
    let kept: Vec<_> = remaining.iter().map(|e| e.transaction_id).collect();
    assert_eq!(kept, [Some(new_tx.id)]);
    let horizon = c.s().purged_through().await.unwrap();
    assert!(horizon > 0 && horizon < remaining[0].cursor);
    c.holds(&old_tx).await; // retention removes events only
    assert_eq!(purge().await.unwrap(), 0);
    assert_eq!(c.s().purged_through().await.unwrap(), horizon);
}

async fn enrollments_are_single_use_and_public_keys_unique(db: TestDb) {
    let c = Case::new(&db).await;
    let id = EnrollmentId::random();
    let secret_hash = SecretHash::from_slice(&[3; 32]).unwrap();
    let expires_at = c.at + TimeDelta::minutes(10);
    let enrollment = NewEnrollment {
        id,
        application_id: c.app,
        user_id: user("alice"),
        secret_hash: secret_hash.clone(),
        created_at: c.at,
        expires_at,
    };
    c.s().create_enrollment(&enrollment).await.unwrap();
    let consume = |id| c.s().consume_enrollment(id, c.at);
    let used = consume(id).await.unwrap().unwrap();
    assert_eq!(used.expires_at, expires_at);
    let used = (used.application_id, used.user_id, used.secret_hash);
    assert_eq!(used, (c.app, user("alice"), secret_hash));
    assert!(consume(id).await.unwrap().is_none(), "single use");
    assert!(consume(EnrollmentId::random()).await.unwrap().is_none());

    let new_device = NewDevice {
        id: DeviceId::random(),
        application_id: c.app,
        user_id: user("alice"),
        name: DeviceName::parse("kiosk").unwrap(),
        public_key: [42; 32],
        created_at: c.at,
    };
    let enrolled = c.s().insert_device(&new_device).await.unwrap();
    let expected = Device {
        id: new_device.id,
        application_id: c.app,
        application_name: "Shop".to_owned(),
        user_id: user("alice"),
        name: "kiosk".to_owned(),
        public_key: [42; 32],
        created_at: c.at,
        last_seen_at: None,
        revoked_at: None,
    };
    assert_eq!(enrolled, expected);
    assert_eq!(c.find_device(new_device.id).await, expected);
    let seen = c.s().touch_device(new_device.id, c.at).await.unwrap();
    assert_eq!(seen.unwrap().last_seen_at, Some(c.at));
    assert_eq!(
        c.s().touch_device(DeviceId::random(), c.at).await.unwrap(),
        None
    );
    let duplicate = NewDevice {
        id: DeviceId::random(),
        ..new_device
    };
    let refused = c.s().insert_device(&duplicate).await;
    assert!(matches!(refused, Err(StoreError::DuplicatePublicKey)));
    assert_eq!(c.s().find_device(duplicate.id).await.unwrap(), None);
    let log = c.events(c.app).await;
    let log: Vec<_> = log.iter().map(|e| (e.event_type, e.device_id)).collect();
    assert_eq!(log, [(DeviceEnrolled, Some(new_device.id))]);
}

async fn otp_lookups_are_reserved_atomically_within_their_window(db: TestDb) {
    let c = Case::new(&db).await;
    let (phone, tablet) = (c.device("alice").await, c.device("alice").await);
    let window = TimeDelta::minutes(5);
    let s = c.s();
    let reserve = move |device, at: DateTime<Utc>| async move {
        s.reserve_otp_attempt(device, &StrikeWindow::new(5, FIVE_MINUTES, at), None)
            .await
            .map(|r| r.is_allowed())
    };
    for _ in 0..5 {
        assert!(reserve(phone.id, c.at).await.unwrap());
    }
    assert!(
        !reserve(phone.id, c.at).await.unwrap(),
        "the sixth is refused"
    );
    assert!(
        reserve(tablet.id, c.at).await.unwrap(),
        "devices count apart"
    );
    assert!(
        !reserve(phone.id, c.at + TimeDelta::minutes(4))
            .await
            .unwrap()
    );
    assert!(
        reserve(phone.id, c.at + window).await.unwrap(),
        "a new window starts once the first one has passed"
    );
    // Fifty lookups of one device at once: exactly five get through.
    let fresh = c.device("bob").await;
    let store = Arc::clone(&c.store);
    let at = c.at;
    let attempts: Vec<_> = (0..50)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .reserve_otp_attempt(fresh.id, &StrikeWindow::new(5, FIVE_MINUTES, at), None)
                    .await
                    .map(|r| r.is_allowed())
            })
        })
        .collect();
    let mut allowed = 0;
    for attempt in attempts {
        allowed += usize::from(attempt.await.unwrap().unwrap());
    }
    assert_eq!(allowed, 5);
}

async fn an_otp_reservation_reads_the_transaction_only_once_allowed(db: TestDb) {
    let c = Case::new(&db).await;
    let phone = c.device("alice").await;
    let (pending, _) = c.login().await;
    let other_app = create_app(c.s(), "Other").await;
    let window = StrikeWindow::new(3, FIVE_MINUTES, c.at);
    // Lookups with a wrong secret, so each takes a strike.
    let lookup = |app, id| OtpLookup {
        application_id: app,
        transaction_id: id,
        otp_hash: SecretHash::from_slice(&[4; 32]).unwrap(),
    };
    let (s, window, phone_id) = (c.s(), &window, phone.id);
    let reserve = move |lookup: OtpLookup| async move {
        s.reserve_otp_attempt(phone_id, window, Some(&lookup))
            .await
            .unwrap()
    };
    assert_eq!(
        reserve(lookup(c.app, pending.id)).await,
        Reservation::Allowed(Some(Box::new(pending.clone()))),
        "an allowed lookup reads the transaction as stored"
    );
    assert_eq!(
        reserve(lookup(other_app, pending.id)).await,
        Reservation::Allowed(None),
        "another application's transaction is not found"
    );
    assert_eq!(
        reserve(lookup(c.app, TransactionId::random())).await,
        Reservation::Allowed(None)
    );
    assert_eq!(
        reserve(lookup(c.app, pending.id)).await,
        Reservation::CoolingOff,
        "past the limit nothing is read"
    );
}

async fn lookups_matching_an_open_otp_take_no_strike(db: TestDb) {
    let c = Case::new(&db).await;
    let phone = c.device("alice").await;
    let (pending, otp) = c.login().await;
    let window = StrikeWindow::new(5, FIVE_MINUTES, c.at);
    let matching = OtpLookup {
        application_id: c.app,
        transaction_id: pending.id,
        otp_hash: otp.hash(),
    };
    let (s, window, phone_id) = (c.s(), &window, phone.id);
    let reserve = move |lookup: Option<OtpLookup>| async move {
        s.reserve_otp_attempt(phone_id, window, lookup.as_ref())
            .await
            .unwrap()
    };
    // However many are in flight, a device's valid OTPs use up nothing.
    let at_once = futures::future::join_all((0..20).map(|_| reserve(Some(matching.clone())))).await;
    assert!(at_once.iter().all(Reservation::is_allowed), "{at_once:?}");
    // The right id with another secret, another application's id, a used
    // OTP, no OTP at all: each takes a strike — five, then the device
    // cools off.
    let wrong_secret = OtpLookup {
        otp_hash: SecretHash::from_slice(&[3; 32]).unwrap(),
        ..matching.clone()
    };
    let foreign = OtpLookup {
        application_id: create_app(c.s(), "Other").await,
        ..matching.clone()
    };
    let used = OtpLookup {
        transaction_id: c.scanned(&phone).await.id,
        ..matching.clone()
    };
    for lookup in [Some(wrong_secret), Some(foreign), Some(used), None, None] {
        assert!(reserve(lookup).await.is_allowed());
    }
    assert_eq!(reserve(None).await, Reservation::CoolingOff, "five strikes");
    // Cooling off, even a valid OTP waits (a guesser learns nothing).
    assert_eq!(reserve(Some(matching)).await, Reservation::CoolingOff);
}

async fn a_scan_without_a_reservation_waits_out_the_cooling_off(db: TestDb) {
    let c = Case::new(&db).await;
    let (phone, tablet) = (c.device("alice").await, c.device("alice").await);
    let window = StrikeWindow::new(5, FIVE_MINUTES, c.at);
    for _ in 0..5 {
        let reserved = c.s().reserve_otp_attempt(phone.id, &window, None).await;
        assert!(reserved.unwrap().is_allowed());
    }
    // The phone cools off: its scans decided without a reservation fail
    // their guard at commit and change nothing, the tablet's apply — alone
    // and concurrently (PostgreSQL puts concurrent changes in one batch,
    // where each fails only on its own guard).
    let (t, otp) = c.login().await;
    let cooling = t.scan_unreserved(&phone, &otp, [9; 32], window).unwrap();
    assert_eq!(cooling.guard.otp_lookups, Some(window));
    assert!(!c.apply(&cooling).await, "a cooling-off device's scan");
    c.holds(&t).await;
    let mut scans = Vec::new();
    for n in 0..16 {
        let (t, otp) = c.login().await;
        let device = if n % 2 == 0 { &phone } else { &tablet };
        let scan = t.scan_unreserved(device, &otp, [9; 32], window).unwrap();
        let store = Arc::clone(&c.store);
        scans.push((n, tokio::spawn(async move { store.apply(&scan).await })));
    }
    for (n, scan) in scans {
        let applied = scan.await.unwrap().unwrap();
        assert_eq!(
            applied,
            n % 2 == 1,
            "scan {n} (the phone's are the even ones)"
        );
    }
    // Under the reservation's condition: a window that is over, or a
    // limit above the strikes taken, lets the same scan through; so does a
    // scan whose lookup was reserved (no such guard).
    let over = StrikeWindow {
        over_if_opened_by: c.at,
        ..window
    };
    let scan = t.scan_unreserved(&phone, &otp, [9; 32], over).unwrap();
    assert!(c.apply(&scan).await, "the window is over");
    let (t, otp) = c.login().await;
    let higher = StrikeWindow { limit: 6, ..window };
    let scan = t.scan_unreserved(&phone, &otp, [9; 32], higher).unwrap();
    assert!(c.apply(&scan).await, "five strikes of six");
    let (t, otp) = c.login().await;
    let reserved = t.scan(&phone, &otp, [9; 32], c.at).unwrap();
    assert_eq!(reserved.guard.otp_lookups, None);
    assert!(c.apply(&reserved).await, "a reserved scan");
}

async fn one_open_push_per_user_and_the_push_history(db: TestDb) {
    let c = Case::new(&db).await;
    let s = |n| c.at + seconds(n);
    let phone = c.device("alice").await;
    let (alice, bob) = (user("alice"), user("bob"));
    let open = |who| c.s().open_push(c.app, who);
    let fraud = |who| c.s().last_fraud_report(c.app, who);
    let case = &c;
    let unanswered = move |who, since| async move {
        let rule = UnansweredPushes {
            since,
            answered: State::Accepted,
        };
        case.s().count_unanswered_pushes(case.app, who, &rule).await
    };
    let long_ago = c.at - TimeDelta::minutes(10);

    let first = c.push("alice", c.at).await;
    let second = new_push(c.app, "alice", None, c.at);
    let refused = c.s().apply(&second).await;
    assert!(matches!(refused, Err(StoreError::OpenPushExists)));
    assert_eq!(c.find(c.app, second.after.id).await, None);
    assert_eq!(c.events_of(&second.after).await, []);
    let bobs = c.push("bob", c.at).await;
    assert_eq!(open(&alice).await.unwrap(), Some(first.clone()));
    assert_eq!(open(&bob).await.unwrap(), Some(bobs));
    assert_eq!(unanswered(&alice, long_ago).await.unwrap(), 1);
    assert_eq!(fraud(&alice).await.unwrap(), None);

    let not_me = decide(&first, &phone, deny(DenyReason::NotMe), s(1));
    assert!(not_me.event.fraud_reported);
    assert!(c.apply(&not_me).await);
    assert_eq!(open(&alice).await.unwrap(), None);
    assert_eq!(fraud(&alice).await.unwrap(), Some(s(1)));
    assert_eq!(fraud(&bob).await.unwrap(), None);

    // Only not_me denials are fraud reports.
    let third = c.push("alice", s(2)).await;
    let policy = decide(&third, &phone, deny(DenyReason::Policy), s(3));
    assert!(c.apply(&policy).await);
    assert_eq!(fraud(&alice).await.unwrap(), Some(s(1)));
    assert_eq!(unanswered(&alice, long_ago).await.unwrap(), 2);
    assert_eq!(unanswered(&alice, s(1)).await.unwrap(), 1);

    // An accepted push resets the count.
    let fourth = c.push("alice", s(4)).await;
    assert!(c.apply(&decide(&fourth, &phone, accept(), s(5))).await);
    assert_eq!(unanswered(&alice, long_ago).await.unwrap(), 0);
    c.push("alice", s(6)).await;
    assert_eq!(unanswered(&alice, long_ago).await.unwrap(), 1);
    assert_eq!(unanswered(&bob, long_ago).await.unwrap(), 1);
}

async fn overdue_transactions_are_the_open_ones_past_their_expiry(db: TestDb) {
    let c = Case::new(&db).await;
    let later = c.at + seconds(61);
    let phone = c.device("alice").await;
    let (pending, _) = c.login().await;
    let bound = c.scanned(&phone).await;
    let (cancelled, _) = c.login().await;
    assert!(c.apply(&cancelled.cancel(c.at).unwrap()).await);
    let (fresh, _) = c.login_at(later).await;
    let overdue = |at, limit| c.s().overdue_transactions(at, limit);

    assert_eq!(overdue(c.at, 100).await.unwrap(), []);
    let listed = overdue(later, 100).await.unwrap();
    assert!(listed.contains(&bound), "listed as stored");
    assert_eq!(ids(listed), BTreeSet::from([pending.id, bound.id]));
    assert_eq!(overdue(later, 1).await.unwrap().len(), 1, "limit");
    let at_the_end = ids(overdue(fresh.expires_at, 100).await.unwrap());
    assert_eq!(at_the_end, BTreeSet::from([pending.id, bound.id, fresh.id]));

    let expire = pending.expire(later).unwrap();
    assert!(c.apply(&expire).await);
    assert!(!c.apply(&expire).await, "expired once");
    let still = ids(overdue(later, 100).await.unwrap());
    assert_eq!(still, BTreeSet::from([bound.id]));
}

async fn open_confirmations_are_the_devices_scans_and_its_users_pushes(db: TestDb) {
    let c = Case::new(&db).await;
    let (phone, tablet) = (c.device("alice").await, c.device("alice").await);
    let bobs_phone = c.device("bob").await;
    let mine = c.scanned(&phone).await;
    let theirs = c.scanned(&tablet).await;
    c.login().await;
    let ended = c.scanned(&phone).await;
    assert!(c.apply(&ended.cancel(c.at).unwrap()).await);
    let alices = c.push("alice", c.at).await;
    let bobs = c.push("bob", c.at).await;
    let open = |device| c.s().open_confirmations(device);

    let listed = open(&phone).await.unwrap();
    assert!(listed.contains(&mine) && listed.contains(&alices));
    assert_eq!(ids(listed), BTreeSet::from([mine.id, alices.id]));
    let tablets = ids(open(&tablet).await.unwrap());
    assert_eq!(tablets, BTreeSet::from([theirs.id, alices.id]));
    let bobs_own = ids(open(&bobs_phone).await.unwrap());
    assert_eq!(bobs_own, BTreeSet::from([bobs.id]));

    // Answered by the tablet: no longer a confirmation for the phone.
    assert!(c.apply(&decide(&alices, &tablet, accept(), c.at)).await);
    assert_eq!(ids(open(&phone).await.unwrap()), BTreeSet::from([mine.id]));
}

assent_tests::on_both_engines!(
    applied_changes_read_back_as_decided_with_their_events,
    a_change_decided_on_a_stale_version_changes_nothing,
    concurrent_scans_of_one_version_have_exactly_one_winner,
    a_decision_racing_a_cancellation_has_exactly_one_winner,
    guards_fail_a_change_at_commit_time,
    applications_are_isolated,
    revocation_fails_every_held_transaction_once,
    a_revocation_decided_on_a_stale_held_set_changes_nothing,
    cursors_grow_and_incremental_reads_miss_nothing,
    retention_purges_old_events_and_records_the_horizon,
    enrollments_are_single_use_and_public_keys_unique,
    otp_lookups_are_reserved_atomically_within_their_window,
    an_otp_reservation_reads_the_transaction_only_once_allowed,
    lookups_matching_an_open_otp_take_no_strike,
    a_scan_without_a_reservation_waits_out_the_cooling_off,
    one_open_push_per_user_and_the_push_history,
    overdue_transactions_are_the_open_ones_past_their_expiry,
    open_confirmations_are_the_devices_scans_and_its_users_pushes,
);
