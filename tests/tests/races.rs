//! Races that must still end in exactly one outcome: two devices for one
//! OTP, and a decision against the expiry sweeper.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use assent_proto::v1::server_message::Body;
use assent_proto::v1::{CreateOtpAuthenticationRequest, TransactionState};
use assent_server::domain::{Context, DeviceId, Message, TransactionState as State};
use assent_server::notify::Notifier;
use assent_server::service::{AuthService, CreateOtpInput, ServiceLimits};
use assent_server::store::{ExpiryGuard, Transition};
use assent_tests::{TestApp, TestDb, TestDevice, TestServer, rp_client, transaction};

const ITERATIONS: usize = 200;

async fn two_devices_racing_for_one_otp_yield_exactly_one_scan(db: TestDb) {
    let server = TestServer::start_with(&db, |config| config.create_burst = 10_000).await;
    let app = TestApp::create(&db, "Race Shop").await;
    let first = TestDevice::enroll(&server, &app, "alice").await;
    let second = TestDevice::enroll(&server, &app, "alice").await;
    let mut a = first.connect(&server).await.expect("connect first");
    let mut b = second.connect(&server).await.expect("connect second");
    let mut rp = rp_client(&server, &app.api_key).await;

    let mut wins = [0usize; 2];
    for _ in 0..ITERATIONS {
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
    assert_eq!(wins[0] + wins[1], ITERATIONS);
}

async fn decision_racing_expiry_ends_in_exactly_one_terminal_state(db: TestDb) {
    let store = db.store().await;
    let app = TestApp::create(&db, "Race Shop").await;
    let service = Arc::new(AuthService::new(
        Arc::clone(&store),
        Notifier::new(),
        ServiceLimits {
            create_burst: 10_000,
            ..ServiceLimits::default()
        },
    ));
    let caller = service.authenticate(&app.api_key).await.expect("key");
    // A device row to bind transactions to, enrolled through the real flow.
    let server = TestServer::start(&db).await;
    let device = TestDevice::enroll(&server, &app, "alice").await;
    let device_id = DeviceId::parse(&device.device_id).expect("device id");
    let record = store
        .find_device(device_id)
        .await
        .expect("find")
        .expect("device");

    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
    let mut outcomes = [0usize; 2];
    for _ in 0..ITERATIONS {
        let start = chrono::Utc::now();
        let created = service
            .create_otp_authentication(
                &caller,
                CreateOtpInput {
                    message: Message::parse("Race?").unwrap(),
                    ttl: std::time::Duration::from_secs(10),
                    context: Context::default(),
                    user_id: None,
                },
                start,
                &mut rng,
            )
            .await
            .expect("create");
        let id = created.transaction.id;
        service
            .submit_otp(&record, &created.otp.expose(), start, &mut rng)
            .await
            .expect("scan");
        // The decision is made just before the expiry, the sweep just after:
        // each guard holds on its own, so only the state guard decides.
        let decide_at = created.transaction.expires_at - chrono::TimeDelta::milliseconds(1);
        let sweep_at = created.transaction.expires_at;
        let decide = {
            let store = Arc::clone(&store);
            let app_id = caller.application.id;
            tokio::spawn(async move {
                store
                    .transition(&Transition {
                        id,
                        application_id: app_id,
                        to: State::Accepted,
                        reason: None,
                        bound_device: Some(device_id),
                        bound_user: None,
                        signature: Some(vec![0; 64]),
                        expiry: ExpiryGuard::Unexpired,
                        now: decide_at,
                    })
                    .await
            })
        };
        let sweep = {
            let service = Arc::clone(&service);
            tokio::spawn(async move { service.sweep(sweep_at).await })
        };
        let (decided, swept) = (
            decide.await.unwrap().expect("decide"),
            sweep.await.unwrap().expect("sweep"),
        );
        assert_eq!(
            usize::from(decided.is_some()) + swept,
            1,
            "exactly one transition wins"
        );
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
        let events = store
            .events_after(caller.application.id, 0, 10_000)
            .await
            .expect("events");
        let terminal_events = events
            .iter()
            .filter(|e| e.transaction_id == Some(id))
            .filter(|e| {
                e.event_type == "transaction.accepted" || e.event_type == "transaction.expired"
            })
            .count();
        assert_eq!(terminal_events, 1, "exactly one terminal event");
    }
    assert_eq!(outcomes[0] + outcomes[1], ITERATIONS);
}

assent_tests::on_both_engines!(
    two_devices_racing_for_one_otp_yield_exactly_one_scan,
    decision_racing_expiry_ends_in_exactly_one_terminal_state,
);
