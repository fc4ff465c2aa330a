//! Push login: fan-out to every device of the user, one winner, cancellation
//! that reaches the device, presence, number matching and anti-fatigue.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use assent_proto::signing::SignedVerdict;
use assent_proto::v1::server_message::Body;
use assent_proto::v1::{
    CancelTransactionRequest, ConfirmationRequest, CreatePushAuthenticationRequest,
    CreatePushAuthenticationResponse, GetDeviceRequest, ListDevicesRequest, SubscribeRequest,
    TransactionKind, TransactionState,
};
use assent_server::domain::ManualClock;
use assent_tests::{
    DeviceStream, RpClient, TestApp, TestDb, TestDevice, TestServer, rp_client, transaction, within,
};
use tonic::Code;

fn push_request(user: &str) -> CreatePushAuthenticationRequest {
    CreatePushAuthenticationRequest {
        user_id: user.to_owned(),
        message: "Log in to Example Shop?".to_owned(),
        ttl_seconds: 60,
        ..Default::default()
    }
}

async fn push(
    rp: &mut RpClient,
    request: CreatePushAuthenticationRequest,
) -> CreatePushAuthenticationResponse {
    rp.create_push_authentication(request)
        .await
        .expect("push")
        .into_inner()
}

/// The next message on the stream must be a confirmation request.
async fn confirmation(stream: &mut DeviceStream) -> ConfirmationRequest {
    match stream.next().await.expect("stream") {
        Some(Body::ConfirmationRequest(request)) => request,
        other => panic!("expected a confirmation request, got {other:?}"),
    }
}

async fn state(rp: &mut RpClient, id: &str) -> (TransactionState, String) {
    let tx = transaction(rp, id).await;
    (tx.state(), tx.reason)
}

async fn push_to_two_devices_has_exactly_one_winner_and_the_other_is_told(db: TestDb) {
    let server = TestServer::start_with(&db, |c| c.create_burst = 10_000).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let first = TestDevice::enroll(&server, &app, "alice").await;
    let second = TestDevice::enroll(&server, &app, "alice").await;
    let mut a = first.connect(&server).await.expect("connect");
    let mut b = second.connect(&server).await.expect("connect");
    let mut rp = rp_client(&server, &app.api_key).await;
    let mut wins = [0usize; 2];
    for _ in 0..200 {
        let created = push(&mut rp, push_request("alice")).await;
        assert_eq!(created.devices_reached, 2);
        let (ra, rb) = (confirmation(&mut a).await, confirmation(&mut b).await);
        assert_eq!(ra.transaction_id, created.transaction_id);
        assert_eq!(ra.kind(), TransactionKind::Push);
        assert_eq!(ra.nonce, rb.nonce);
        let (da, db_) = (
            first.decision(&ra, SignedVerdict::Accept, ""),
            second.decision(&rb, SignedVerdict::Accept, ""),
        );
        let (outcome_a, outcome_b) = tokio::join!(
            decide_and_collect(&mut a, da, &created.transaction_id),
            decide_and_collect(&mut b, db_, &created.transaction_id)
        );
        let winners = [outcome_a.applied, outcome_b.applied];
        assert_eq!(
            winners.iter().filter(|&&w| w).count(),
            1,
            "{outcome_a:?} {outcome_b:?}"
        );
        let loser = if outcome_a.applied {
            &outcome_b
        } else {
            &outcome_a
        };
        assert_eq!(loser.cancelled.as_deref(), Some("answered_elsewhere"));
        let winner = if outcome_a.applied {
            &outcome_a
        } else {
            &outcome_b
        };
        assert_eq!(winner.cancelled, None, "the winner is not told to cancel");
        wins[usize::from(outcome_b.applied)] += 1;
        assert_eq!(
            state(&mut rp, &created.transaction_id).await.0,
            TransactionState::Accepted
        );
    }
    assert_eq!(wins[0] + wins[1], 200);
}

#[derive(Debug, Default)]
struct Outcome {
    applied: bool,
    cancelled: Option<String>,
}

/// Sends a decision and reads until its answer, noting any cancellation of
/// the same transaction (which may come before or after the answer; for the
/// loser it is waited for).
async fn decide_and_collect(
    stream: &mut DeviceStream,
    decision: assent_proto::v1::SignedDecision,
    transaction_id: &str,
) -> Outcome {
    stream
        .send(assent_proto::v1::agent_message::Body::Decision(decision))
        .await;
    let mut outcome = Outcome::default();
    let mut answered = false;
    while !answered || (!outcome.applied && outcome.cancelled.is_none()) {
        match stream.next().await.expect("stream").expect("open") {
            Body::DecisionResult(result) => {
                answered = true;
                outcome.applied = result.applied;
            }
            Body::Rejection(rejection) => {
                assert_eq!(
                    Code::from_i32(rejection.code),
                    Code::NotFound,
                    "{rejection:?}"
                );
                answered = true;
            }
            Body::Cancellation(cancellation) => {
                assert_eq!(cancellation.transaction_id, transaction_id);
                outcome.cancelled = Some(cancellation.reason);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    outcome
}

async fn a_device_that_connects_after_the_push_still_receives_it(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let device = TestDevice::enroll(&server, &app, "alice").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let created = push(&mut rp, push_request("alice")).await;
    assert_eq!(created.devices_reached, 0, "nobody was connected");
    let mut stream = device.connect(&server).await.expect("connect");
    let request = confirmation(&mut stream).await;
    assert_eq!(request.transaction_id, created.transaction_id);
    assert_eq!(request.request_id, 0);
    let Body::DecisionResult(result) = stream
        .decide(device.decision(&request, SignedVerdict::Accept, ""))
        .await
    else {
        panic!("expected a decision result");
    };
    assert!(result.applied);
    let (final_state, _) = state(&mut rp, &created.transaction_id).await;
    assert_eq!(final_state, TransactionState::Accepted);
}

async fn cancelling_a_push_reaches_the_device_at_once(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let device = TestDevice::enroll(&server, &app, "alice").await;
    let mut stream = device.connect(&server).await.expect("connect");
    let mut rp = rp_client(&server, &app.api_key).await;
    let created = push(&mut rp, push_request("alice")).await;
    confirmation(&mut stream).await;
    let started = Instant::now();
    rp.cancel_transaction(CancelTransactionRequest {
        transaction_id: created.transaction_id.clone(),
    })
    .await
    .expect("cancel");
    let Some(Body::Cancellation(cancellation)) = stream.next().await.expect("stream") else {
        panic!("the device must be told");
    };
    let latency = started.elapsed();
    assert_eq!(cancellation.transaction_id, created.transaction_id);
    assert_eq!(cancellation.reason, "cancelled");
    // The target is 100 ms on loopback; the bound here only catches a
    // cancellation that waits for a poll or a timeout.
    assert!(
        latency < Duration::from_secs(1),
        "cancellation took {latency:?}"
    );
}

async fn presence_flips_when_the_device_disconnects(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let device = TestDevice::enroll(&server, &app, "alice").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let get = |rp: &mut RpClient| {
        let mut rp = rp.clone();
        let id = device.device_id.clone();
        async move {
            rp.get_device(GetDeviceRequest { device_id: id })
                .await
                .expect("get device")
                .into_inner()
                .device
                .expect("device")
        }
    };
    let before = get(&mut rp).await;
    assert!(!before.connected);
    assert!(before.last_seen_at.is_none());
    let stream = device.connect(&server).await.expect("connect");
    let listed = rp
        .list_devices(ListDevicesRequest {
            user_id: "alice".to_owned(),
        })
        .await
        .expect("list")
        .into_inner()
        .devices;
    assert!(listed[0].connected);
    assert!(listed[0].last_seen_at.is_some());
    drop(stream);
    within(10, "presence to flip", async {
        while get(&mut rp).await.connected {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

async fn number_matching_accepts_the_right_pick_and_denies_a_wrong_one(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let device = TestDevice::enroll(&server, &app, "alice").await;
    let mut stream = device.connect(&server).await.expect("connect");
    let mut rp = rp_client(&server, &app.api_key).await;
    let matching = || CreatePushAuthenticationRequest {
        number_matching: true,
        ..push_request("alice")
    };

    let created = push(&mut rp, matching()).await;
    assert!((10..=99).contains(&created.number));
    let request = confirmation(&mut stream).await;
    assert_eq!(request.number_choices.len(), 3);
    assert!(request.number_choices.contains(&created.number));
    // Accepting without a pick is refused outright.
    let Body::Rejection(rejection) = stream
        .decide(device.decision(&request, SignedVerdict::Accept, ""))
        .await
    else {
        panic!("an accept without a number must be rejected");
    };
    assert_eq!(Code::from_i32(rejection.code), Code::InvalidArgument);
    let right =
        device.decision_with_number(&request, SignedVerdict::Accept, "", Some(created.number));
    let Body::DecisionResult(result) = stream.decide(right).await else {
        panic!("expected a decision result");
    };
    assert_eq!(result.state(), TransactionState::Accepted);

    let created = push(&mut rp, matching()).await;
    let request = confirmation(&mut stream).await;
    let wrong = *request
        .number_choices
        .iter()
        .find(|&&n| n != created.number)
        .expect("a decoy");
    let Body::DecisionResult(result) = stream
        .decide(device.decision_with_number(&request, SignedVerdict::Accept, "", Some(wrong)))
        .await
    else {
        panic!("expected a decision result");
    };
    assert_eq!(result.state(), TransactionState::Denied);
    assert_eq!(result.reason, "wrong_number");
    let (final_state, reason) = state(&mut rp, &created.transaction_id).await;
    assert_eq!(
        (final_state, reason.as_str()),
        (TransactionState::Denied, "wrong_number")
    );
}

async fn a_second_push_while_one_is_open_is_refused_naming_it(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    TestDevice::enroll(&server, &app, "alice").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let open = push(&mut rp, push_request("alice")).await;
    let refused = rp
        .create_push_authentication(push_request("alice"))
        .await
        .expect_err("a second open push must be refused");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains(&open.transaction_id),
        "{}",
        refused.message()
    );
    rp.cancel_transaction(CancelTransactionRequest {
        transaction_id: open.transaction_id,
    })
    .await
    .expect("cancel");
    push(&mut rp, push_request("alice")).await;
}

async fn unanswered_pushes_are_capped(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    TestDevice::enroll(&server, &app, "alice").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    for _ in 0..5 {
        let created = push(&mut rp, push_request("alice")).await;
        rp.cancel_transaction(CancelTransactionRequest {
            transaction_id: created.transaction_id,
        })
        .await
        .expect("cancel");
    }
    let refused = rp
        .create_push_authentication(push_request("alice"))
        .await
        .expect_err("the sixth unanswered push must be refused");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("unaccepted"),
        "{}",
        refused.message()
    );
    // Other users are not affected.
    TestDevice::enroll(&server, &app, "bob").await;
    push(&mut rp, push_request("bob")).await;
}

async fn a_not_me_denial_reports_fraud_and_blocks_pushes(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let device = TestDevice::enroll(&server, &app, "alice").await;
    let mut stream = device.connect(&server).await.expect("connect");
    let mut rp = rp_client(&server, &app.api_key).await;
    let mut events = rp
        .subscribe(SubscribeRequest {
            after_cursor: 0,
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    let created = push(&mut rp, push_request("alice")).await;
    let request = confirmation(&mut stream).await;
    stream
        .decide(device.decision(&request, SignedVerdict::Deny, "not_me"))
        .await;
    let denied = within(10, "the denied event", async {
        loop {
            let event = events.message().await.expect("stream").expect("open");
            if event.r#type == "transaction.denied" {
                return event;
            }
        }
    })
    .await;
    assert_eq!(denied.transaction_id, created.transaction_id);
    assert!(denied.fraud_reported);
    assert_eq!(denied.reason, "not_me");
    let blocked = rp
        .create_push_authentication(push_request("alice"))
        .await
        .expect_err("pushes to alice must be blocked");
    assert_eq!(blocked.code(), Code::ResourceExhausted);
    assert!(
        blocked.message().contains("blocked"),
        "{}",
        blocked.message()
    );
}

async fn a_push_to_a_user_without_devices_or_of_another_application_is_refused(db: TestDb) {
    let server = TestServer::start(&db).await;
    let shop_a = TestApp::create(&db, "Shop A").await;
    let shop_b = TestApp::create(&db, "Shop B").await;
    let device_a = TestDevice::enroll(&server, &shop_a, "alice").await;
    let mut stream_a = device_a.connect(&server).await.expect("connect");
    let mut rp_b = rp_client(&server, &shop_b.api_key).await;
    let refused = rp_b
        .create_push_authentication(push_request("alice"))
        .await
        .expect_err("B has no alice with a device");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    // B's own alice gets a push; A's device of a same-named user never sees it.
    let device_b = TestDevice::enroll(&server, &shop_b, "alice").await;
    let created = push(&mut rp_b, push_request("alice")).await;
    assert_eq!(created.devices_reached, 0);
    let mut stream_b = device_b.connect(&server).await.expect("connect");
    let request = confirmation(&mut stream_b).await;
    assert_eq!(request.transaction_id, created.transaction_id);
    // A's device cannot decide B's push even with a well-formed signature.
    let forged = device_a.decision(&request, SignedVerdict::Accept, "");
    let Body::Rejection(rejection) = stream_a.decide(forged).await else {
        panic!("another application's device must be refused");
    };
    assert_eq!(Code::from_i32(rejection.code), Code::NotFound);
    let mut rp_b = rp_client(&server, &shop_b.api_key).await;
    assert_eq!(
        state(&mut rp_b, &created.transaction_id).await.0,
        TransactionState::Pending
    );
}

async fn an_unanswered_push_expires_and_is_withdrawn(db: TestDb) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let server = TestServer::start_with_clock(&db, Arc::clone(&clock)).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let device = TestDevice::enroll(&server, &app, "alice").await;
    let mut stream = device.connect(&server).await.expect("connect");
    let mut rp = rp_client(&server, &app.api_key).await;
    let created = push(
        &mut rp,
        CreatePushAuthenticationRequest {
            ttl_seconds: 10,
            ..push_request("alice")
        },
    )
    .await;
    confirmation(&mut stream).await;
    // Time passes for the server only; its sweeper finds the push overdue.
    clock.advance(Duration::from_secs(10));
    let cancellation = within(5, "the expiry", async {
        loop {
            if let Some(Body::Cancellation(c)) = stream.next().await.expect("stream") {
                return c;
            }
        }
    })
    .await;
    assert_eq!(cancellation.transaction_id, created.transaction_id);
    assert_eq!(cancellation.reason, "expired");
    assert_eq!(
        state(&mut rp, &created.transaction_id).await.0,
        TransactionState::Expired
    );
}

assent_tests::on_both_engines!(
    push_to_two_devices_has_exactly_one_winner_and_the_other_is_told,
    a_device_that_connects_after_the_push_still_receives_it,
    cancelling_a_push_reaches_the_device_at_once,
    presence_flips_when_the_device_disconnects,
    number_matching_accepts_the_right_pick_and_denies_a_wrong_one,
    a_second_push_while_one_is_open_is_refused_naming_it,
    unanswered_pushes_are_capped,
    a_not_me_denial_reports_fraud_and_blocks_pushes,
    a_push_to_a_user_without_devices_or_of_another_application_is_refused,
    an_unanswered_push_expires_and_is_withdrawn,
);
