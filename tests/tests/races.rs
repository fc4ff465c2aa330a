//! Races that must still end in exactly one outcome, named after their
//! catalogue cases: #2 one OTP scanned by two devices at once, and twice by
//! one device; #23 a decision against the expiry sweeper; #25 a decision
//! against the relying party's cancellation; and a decision against the
//! revocation of the deciding device.
//!
//! The catalogue asks ≥ 1 000 rounds of each. The revocation race runs
//! them in every suite; the others run [`SHORT_ROUNDS`] there and
//! [`LONG_ROUNDS`] with `ASSENT_LONG_RACES=1` (a separate step of
//! `.ci/run`), which keeps the default suite within its time.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use assent_proto::signing::SignedVerdict;
use assent_proto::v1::server_message::Body;
use assent_proto::v1::{CreateOtpAuthenticationRequest, TransactionState};
use assent_server::domain::{
    Context, DenyReason, EventType, Message, Transaction, TransactionState as State, UserId,
};
use assent_server::service::{CreateOtpInput, CreatePushInput};
use assent_server::store::Store;
use assent_tests::{
    InProcess, TestApp, TestDb, TestDevice, TestServer, rp_client, seeded, transaction,
};
use chrono::Utc;

/// Rounds of a race in the default suite.
const SHORT_ROUNDS: usize = 200;
/// Rounds of a race with `ASSENT_LONG_RACES=1` (the catalogue's ≥ 1 000).
const LONG_ROUNDS: usize = 1000;
/// Rounds of the decision-against-revocation race, in every suite.
const REVOCATION_ROUNDS: usize = 1000;

/// How many rounds the races run (see the module's documentation).
fn rounds() -> usize {
    match std::env::var("ASSENT_LONG_RACES").as_deref() {
        Ok("1") => LONG_ROUNDS,
        _ => SHORT_ROUNDS,
    }
}

async fn case_2_two_devices_racing_for_one_otp_yield_exactly_one_scan(db: TestDb) {
    let rounds = rounds();
    let server = TestServer::start_with(&db, |config| config.create_burst = 10_000).await;
    let app = TestApp::create(&db, "Race Shop").await;
    let first = TestDevice::enroll(&server, &app, "alice").await;
    let second = TestDevice::enroll(&server, &app, "alice").await;
    let mut a = first.connect(&server).await.expect("connect first");
    let mut b = second.connect(&server).await.expect("connect second");
    let mut rp = rp_client(&server, &app.api_key).await;

    let mut wins = [0usize; 2];
    for _ in 0..rounds {
        let created = rp
            .create_otp_authentication(CreateOtpAuthenticationRequest {
                message: "Race?".to_owned(),
                ttl_seconds: 60,
                ..Default::default()
            })
            .await
            .expect("create")
            .into_inner();
        let (left, right) = tokio::join!(a.submit(&created.otp), b.submit(&created.otp));
        let confirmations = [&left, &right]
            .iter()
            .filter(|body| matches!(body, Body::ConfirmationRequest(_)))
            .count();
        let rejections = [&left, &right]
            .iter()
            .filter(|body| matches!(body, Body::Rejection(_)))
            .count();
        assert_eq!((confirmations, rejections), (1, 1), "{left:?} / {right:?}");
        wins[usize::from(matches!(right, Body::ConfirmationRequest(_)))] += 1;
        let tx = transaction(&mut rp, &created.transaction_id).await;
        assert_eq!(tx.state(), TransactionState::Scanned);
        let winner = if matches!(left, Body::ConfirmationRequest(_)) {
            &first
        } else {
            &second
        };
        assert_eq!(tx.device_id, winner.device_id);
    }
    assert_eq!(wins[0] + wins[1], rounds);
    eprintln!(
        "{rounds} rounds: first device won {}, second {}",
        wins[0], wins[1]
    );
}

/// #2, one device: the same OTP handed in twice at once by one device (a
/// double scan, a repeated `assent-agent otp`, two streams of one device
/// across a reconnect) is one scan — one confirmation, one refusal, one
/// `transaction.scanned` event. Called on the use case directly, so both
/// lookups really overlap; the clock moves past the wrong-OTP window each
/// round (the refused copy takes a strike, as any used OTP does).
async fn case_2_one_device_handing_in_one_otp_twice_at_once_yields_exactly_one_scan(db: TestDb) {
    let rounds = rounds();
    let store = db.store().await;
    let world = InProcess::new(Arc::clone(&store), Utc::now());
    let caller = world.application("Race Shop").await;
    let app = caller.application.id;
    let mut rng = seeded(2);
    let phone = world.enroll(&caller, "alice", &mut rng).await;
    let mut before = last_cursor(store.as_ref(), app).await;
    for round in 0..rounds {
        let created = world
            .services
            .logins
            .create_otp_authentication(&caller, otp_input(Duration::from_secs(60)), &mut rng)
            .await
            .expect("create");
        let otp = created.otp.expose();
        let seed = u64::try_from(round).unwrap();
        let (mut first_rng, mut second_rng) = (seeded(seed), seeded(!seed));
        let (first, second) = tokio::join!(
            world
                .services
                .confirmations
                .submit_otp(&phone.device, &otp, &mut first_rng),
            world
                .services
                .confirmations
                .submit_otp(&phone.device, &otp, &mut second_rng),
        );
        let scanned = match (first, second) {
            (Ok(scanned), Err(refused)) | (Err(refused), Ok(scanned)) => {
                assert!(
                    matches!(refused, assent_server::service::ServiceError::OtpRefused),
                    "round {round}: the second copy: {refused:?}"
                );
                scanned
            }
            other => panic!("round {round}: not one scan: {other:?}"),
        };
        let stored = store
            .find_transaction(app, created.transaction.id)
            .await
            .expect("find")
            .expect("transaction");
        assert_eq!(stored.state, State::Scanned, "round {round}");
        assert_eq!(
            stored.nonce, scanned.nonce,
            "round {round}: the nonce handed out"
        );
        let events = events_of(store.as_ref(), app, before).await;
        before = events.last().map_or(before, |e| e.cursor);
        let scans = events
            .iter()
            .filter(|e| {
                e.transaction_id == Some(created.transaction.id)
                    && e.event_type == EventType::TransactionScanned
            })
            .count();
        assert_eq!(scans, 1, "round {round}: one scanned event");
        world.clock.advance(Duration::from_secs(301));
    }
    eprintln!("{rounds} rounds of one device handing in one OTP twice at once");
}

fn otp_input(ttl: Duration) -> CreateOtpInput {
    CreateOtpInput {
        message: Message::parse("Race?").unwrap(),
        ttl,
        context: Context::default(),
        user_id: None,
        binding: None,
    }
}

/// The application's events after `after`, in cursor order, up to the
/// newest committed one: on PostgreSQL an event is handed out only once
/// every older transaction of the whole cluster has ended (other tests'
/// included), so this waits until the newest has become visible.
async fn events_of(
    store: &dyn Store,
    app: assent_server::domain::ApplicationId,
    after: i64,
) -> Vec<assent_server::store::EventRecord> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let newest = store.event_head(app).await.expect("event head").newest;
        let events = store
            .events_after(app, after, 100_000)
            .await
            .expect("events");
        let last = events.last().map_or(after, |e| e.cursor);
        if last >= newest || std::time::Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn case_23_decision_racing_expiry_ends_in_exactly_one_terminal_state(db: TestDb) {
    let rounds = rounds();
    let store = db.store().await;
    let start = Utc::now();
    // Two sets of use cases over one store: one decides just before the
    // expiry, the other sweeps just after it. Each guard holds on its own,
    // so only the compare-and-set decides.
    let deciding = InProcess::new(Arc::clone(&store), start);
    let sweeping = InProcess::new(Arc::clone(&store), start);
    let caller = deciding.application("Race Shop").await;
    let mut rng = seeded(7);
    let phone = deciding.enroll(&caller, "alice", &mut rng).await;
    let ttl = Duration::from_secs(10);
    let mut outcomes = [0usize; 2];
    let mut before = last_cursor(store.as_ref(), caller.application.id).await;
    for _ in 0..rounds {
        let created = deciding
            .services
            .logins
            .create_otp_authentication(&caller, otp_input(ttl), &mut rng)
            .await
            .expect("create");
        let scanned = deciding
            .services
            .confirmations
            .submit_otp(&phone.device, &created.otp.expose(), &mut rng)
            .await
            .expect("scan");
        deciding.clock.advance(ttl - Duration::from_millis(1));
        sweeping.clock.advance(ttl);
        let decision = phone.decision(&scanned, SignedVerdict::Accept, None, None);
        let (decided, swept) = tokio::join!(
            deciding
                .services
                .confirmations
                .decide(&phone.device, decision),
            sweeping.services.upkeep.sweep(),
        );
        let decided = decided.expect("a decision gets an answer");
        let swept = swept.expect("sweep");
        assert_eq!(
            usize::from(decided.applied) + swept,
            1,
            "exactly one transition wins"
        );
        deciding.clock.advance(Duration::from_millis(1));
        let id = created.transaction.id;
        let final_state = store
            .find_transaction(caller.application.id, id)
            .await
            .expect("find")
            .expect("transaction")
            .state;
        match final_state {
            State::Accepted => outcomes[0] += 1,
            State::Expired => outcomes[1] += 1,
            other => panic!("unexpected final state {other:?}"),
        }
        let events = events_of(store.as_ref(), caller.application.id, before).await;
        before = events.last().map_or(before, |e| e.cursor);
        let terminal_events = events
            .iter()
            .filter(|e| e.transaction_id == Some(id) && e.event_type.is_outcome())
            .count();
        assert_eq!(terminal_events, 1, "exactly one terminal event");
    }
    assert_eq!(outcomes[0] + outcomes[1], rounds);
    eprintln!(
        "{rounds} rounds: accepted {}, expired {}",
        outcomes[0], outcomes[1]
    );
}

/// The newest cursor of the application's events (0 if none).
async fn last_cursor(store: &dyn Store, app: assent_server::domain::ApplicationId) -> i64 {
    events_of(store, app, 0)
        .await
        .last()
        .map_or(0, |e| e.cursor)
}

/// #25: the device's decision and the relying party's `CancelTransaction`,
/// started at once, many times over: exactly one of them is applied and
/// told so, the other is told the transaction ended (never a second
/// outcome, never an error that hides the first), and one terminal event.
async fn case_25_decision_racing_cancellation_ends_in_exactly_one_terminal_state(db: TestDb) {
    let rounds = rounds();
    let store = db.store().await;
    let world = InProcess::new(Arc::clone(&store), Utc::now());
    let caller = world.application("Race Shop").await;
    let app = caller.application.id;
    let mut rng = seeded(25);
    let phone = world.enroll(&caller, "alice", &mut rng).await;
    let (mut decided_first, mut cancelled_first) = (0usize, 0usize);
    let mut before = last_cursor(store.as_ref(), app).await;
    for round in 0..rounds {
        let created = world
            .services
            .logins
            .create_otp_authentication(&caller, otp_input(Duration::from_secs(60)), &mut rng)
            .await
            .expect("create");
        let scanned = world
            .services
            .confirmations
            .submit_otp(&phone.device, &created.otp.expose(), &mut rng)
            .await
            .expect("scan");
        let (verdict, reason) = if round % 2 == 0 {
            (SignedVerdict::Accept, None)
        } else {
            (SignedVerdict::Deny, Some(DenyReason::Policy))
        };
        let decision = phone.decision(&scanned, verdict, reason, None);
        let (decided, cancelled) = tokio::join!(
            world.services.confirmations.decide(&phone.device, decision),
            world
                .services
                .logins
                .cancel_transaction(&caller, scanned.id),
        );
        let decided = decided.expect("a decision racing a cancellation gets an answer");
        let stored = store
            .find_transaction(app, scanned.id)
            .await
            .expect("find")
            .expect("transaction");
        match cancelled {
            Ok(transaction) => {
                assert_eq!(transaction.state, State::Cancelled, "round {round}");
                assert!(!decided.applied, "round {round}: both were applied");
                assert_eq!(decided.transaction.state, State::Cancelled, "round {round}");
                assert_eq!(stored.state, State::Cancelled, "round {round}");
                cancelled_first += 1;
            }
            Err(error) => {
                assert!(
                    matches!(
                        error,
                        assent_server::service::ServiceError::FailedPrecondition(_)
                    ),
                    "round {round}: the losing cancellation: {error:?}"
                );
                assert!(decided.applied, "round {round}: neither was applied");
                assert!(
                    matches!(stored.state, State::Accepted | State::Denied),
                    "round {round}: {:?}",
                    stored.state
                );
                assert_eq!(decided.transaction.state, stored.state, "round {round}");
                decided_first += 1;
            }
        }
        let events = events_of(store.as_ref(), app, before).await;
        before = events.last().map_or(before, |e| e.cursor);
        let terminal: Vec<_> = events
            .iter()
            .filter(|e| e.transaction_id == Some(scanned.id) && e.event_type.is_outcome())
            .map(|e| e.event_type)
            .collect();
        assert_eq!(terminal.len(), 1, "round {round}: {terminal:?}");
        assert_eq!(terminal[0].state(), Some(stored.state), "round {round}");
    }
    assert_eq!(decided_first + cancelled_first, rounds);
    eprintln!(
        "{rounds} rounds: decision first {decided_first}, cancellation first {cancelled_first}"
    );
}

/// A decision of a device and the revocation of that device, started at
/// once, many times over: no transaction ends ACCEPTED or DENIED by a device
/// whose revocation committed first (the event log is in commit order).
async fn no_decision_of_a_device_commits_after_its_revocation(db: TestDb) {
    let store = db.store().await;
    let world = InProcess::new(Arc::clone(&store), Utc::now());
    let caller = world.application("Race Shop").await;
    let app = caller.application.id;
    let mut rng = seeded(11);
    let (mut decided_first, mut revoked_first) = (0usize, 0usize);
    for round in 0..REVOCATION_ROUNDS {
        let user = format!("user-{round}");
        let phone = world.enroll(&caller, &user, &mut rng).await;
        // Half the rounds race a push, half a scanned OTP transaction.
        let held: Transaction = if round % 2 == 0 {
            world
                .services
                .push
                .create_push_authentication(
                    &caller,
                    CreatePushInput {
                        user_id: UserId::parse(&user).unwrap(),
                        message: Message::parse("Race?").unwrap(),
                        ttl: Duration::from_secs(60),
                        context: Context::default(),
                        number_matching: false,
                        binding: None,
                    },
                    &mut rng,
                )
                .await
                .expect("push")
                .transaction
        } else {
            let created = world
                .services
                .logins
                .create_otp_authentication(&caller, otp_input(Duration::from_secs(60)), &mut rng)
                .await
                .expect("create");
            world
                .services
                .confirmations
                .submit_otp(&phone.device, &created.otp.expose(), &mut rng)
                .await
                .expect("scan")
        };
        let (verdict, reason) = if round % 4 < 2 {
            (SignedVerdict::Accept, None)
        } else {
            (SignedVerdict::Deny, Some(DenyReason::Policy))
        };
        let decision = phone.decision(&held, verdict, reason, None);
        let before = events_of(store.as_ref(), app, 0)
            .await
            .last()
            .map_or(0, |e| e.cursor);
        let (decided, revoked) = tokio::join!(
            world.services.confirmations.decide(&phone.device, decision),
            world
                .services
                .directory
                .revoke_device(&caller, phone.device.id),
        );
        assert!(revoked.expect("revocation succeeds").record.is_revoked());
        let events = events_of(store.as_ref(), app, before).await;
        let cursor_of = |wanted: &dyn Fn(&assent_server::store::EventRecord) -> bool| {
            events.iter().find(|e| wanted(e)).map(|e| e.cursor)
        };
        let revoked_at = cursor_of(&|e| {
            e.event_type == EventType::DeviceRevoked && e.device_id == Some(phone.device.id)
        })
        .expect("a device.revoked event");
        let decision_at = cursor_of(&|e| {
            e.transaction_id == Some(held.id)
                && matches!(
                    e.event_type,
                    EventType::TransactionAccepted | EventType::TransactionDenied
                )
        });
        let stored = store
            .find_transaction(app, held.id)
            .await
            .expect("find")
            .expect("transaction");
        match decision_at {
            Some(cursor) => {
                assert!(
                    cursor < revoked_at,
                    "round {round}: the decision committed after the revocation"
                );
                assert!(decided.as_ref().is_ok_and(|o| o.applied));
                assert_eq!(stored.device_id, Some(phone.device.id));
                decided_first += 1;
            }
            None => {
                assert!(
                    !decided.as_ref().is_ok_and(|o| o.applied),
                    "round {round}: a decision was acknowledged but not recorded"
                );
                assert!(
                    !matches!(stored.state, State::Accepted | State::Denied),
                    "round {round}: {:?} without a decision event",
                    stored.state
                );
                revoked_first += 1;
            }
        }
    }
    assert_eq!(decided_first + revoked_first, REVOCATION_ROUNDS);
    eprintln!("decision first: {decided_first}, revocation first: {revoked_first}");
}

assent_tests::on_both_engines!(
    case_2_two_devices_racing_for_one_otp_yield_exactly_one_scan,
    case_2_one_device_handing_in_one_otp_twice_at_once_yields_exactly_one_scan,
    case_23_decision_racing_expiry_ends_in_exactly_one_terminal_state,
    case_25_decision_racing_cancellation_ends_in_exactly_one_terminal_state,
    no_decision_of_a_device_commits_after_its_revocation,
);
