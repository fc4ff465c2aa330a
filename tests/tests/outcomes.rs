//! Outcomes a web backend can verify, bind to its session and wait for:
//! server-signed events, decisions verifiable from public data, session
//! binding, WaitTransaction, Subscribe from the head, and refusals with
//! machine-readable details. Verification uses only relying-party RPC data
//! and the documented byte layouts (`assent_proto::verify`), never server
//! internals.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use rand::TryRngCore;

use assent_proto::signing::SignedVerdict;
use assent_proto::v1::server_message::Body;
use assent_proto::v1::{
    ConfirmationRequest, CreateOtpAuthenticationRequest, CreatePushAuthenticationRequest, Event,
    GetDeviceRequest, GetTransactionRequest, ListServerKeysRequest, ServerKey, SubscribeRequest,
    Transaction, TransactionState, WaitTransactionRequest,
};
use assent_proto::verify::{self, VerifyError};
use assent_tests::{RpClient, TestApp, TestDb, TestDevice, TestServer, rp_client, within};
use tonic::Code;
use tonic_types::StatusExt;

const BINDING: &[u8] = b"sha256-of-the-browser-session-0123456789abcdef";

fn otp_request(binding: &[u8]) -> CreateOtpAuthenticationRequest {
    CreateOtpAuthenticationRequest {
        message: "Log in to Example Shop?".to_owned(),
        binding: binding.to_vec(),
        ..Default::default()
    }
}

async fn keys(rp: &mut RpClient) -> Vec<ServerKey> {
    rp.list_server_keys(ListServerKeysRequest {})
        .await
        .expect("keys")
        .into_inner()
        .keys
}

/// Every event of the application from the start until `count` arrived.
async fn events(rp: &mut RpClient, count: usize) -> Vec<Event> {
    let mut stream = rp
        .subscribe(SubscribeRequest::default())
        .await
        .expect("subscribe")
        .into_inner();
    let mut seen = Vec::new();
    while seen.len() < count {
        let next = within(10, "events", stream.message()).await;
        seen.push(next.expect("stream").expect("an event"));
    }
    seen
}

async fn full(rp: &mut RpClient, id: &str) -> (Transaction, Option<Event>) {
    let answer = rp
        .get_transaction(GetTransactionRequest {
            transaction_id: id.to_owned(),
        })
        .await
        .expect("get")
        .into_inner();
    (answer.transaction.expect("transaction"), answer.last_event)
}

/// An OTP login with the binding, scanned and decided by `device`.
async fn decided_otp(
    server: &TestServer,
    rp: &mut RpClient,
    device: &TestDevice,
    verdict: SignedVerdict,
    reason: &str,
) -> String {
    let created = rp
        .create_otp_authentication(otp_request(BINDING))
        .await
        .expect("create")
        .into_inner();
    let mut stream = device.connect(server).await.expect("connect");
    let request = stream.scan(&created.otp).await;
    let answer = stream
        .decide(device.decision(&request, verdict, reason))
        .await;
    assert!(matches!(answer, Body::DecisionResult(_)), "{answer:?}");
    created.transaction_id
}

async fn every_event_is_signed_and_carries_the_binding(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let phone = TestDevice::enroll(&server, &app, "alice").await;
    let id = decided_otp(&server, &mut rp, &phone, SignedVerdict::Accept, "").await;
    // device.enrolled, then created, scanned, accepted.
    let log = events(&mut rp, 4).await;
    let keys = keys(&mut rp).await;
    assert_eq!(keys.len(), 1, "one key, made on first start");
    for event in &log {
        let key = verify::verify_event(event, &keys).expect("every event verifies");
        assert_eq!(key.key_id, event.key_id);
        assert_eq!(event.application_id, app.id);
        if event.transaction_id == id {
            assert_eq!(event.binding, BINDING, "{}", event.r#type);
        }
    }
    let outcome = log.last().unwrap();
    assert_eq!(outcome.r#type, "transaction.accepted");
    assert_eq!(outcome.state(), TransactionState::Accepted);
    // Any changed byte breaks the signature.
    let changed: [fn(&mut Event); 6] = [
        |e| e.cursor += 1,
        |e| e.r#type = "transaction.denied".to_owned(),
        |e| e.binding[0] ^= 1,
        |e| e.user_id.push('x'),
        |e| e.occurred_at.as_mut().unwrap().nanos += 1000,
        |e| e.signature[10] ^= 1,
    ];
    for change in changed {
        let mut forged = outcome.clone();
        change(&mut forged);
        assert!(matches!(
            verify::verify_event(&forged, &keys),
            Err(VerifyError::BadSignature(_))
        ));
    }
    // GetTransaction hands out the same signed outcome and the binding.
    let (transaction, last) = full(&mut rp, &id).await;
    assert_eq!(transaction.binding, BINDING);
    assert_eq!(last.as_ref(), Some(outcome));
}

async fn old_events_still_verify_after_a_key_rotation(db: TestDb) {
    let mut server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let phone = TestDevice::enroll(&server, &app, "alice").await;
    let before = decided_otp(&server, &mut rp, &phone, SignedVerdict::Accept, "").await;
    let (_, old_event) = full(&mut rp, &before).await;
    let old_event = old_event.expect("outcome event");
    let old_key = old_event.key_id.clone();
    let store = db.store().await;
    let mut rng = rand::rngs::OsRng.unwrap_err();
    let new = assent_server::service::signer::rotate(store.as_ref(), &mut rng, chrono::Utc::now())
        .await
        .expect("rotate");
    assert_ne!(new.id, old_key);
    // A replica reads the current key again within 30 s; a restart at once.
    server.restart().await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let published = keys(&mut rp).await;
    assert_eq!(published.len(), 2);
    assert_eq!(published[0].key_id, new.id, "newest first");
    assert!(published[0].retired_at.is_none());
    assert!(published[1].retired_at.is_some(), "the old key is retired");
    let used = verify::verify_event(&old_event, &published).expect("old event");
    assert_eq!(used.key_id, old_key, "verifies with the old key id");
    let after = decided_otp(&server, &mut rp, &phone, SignedVerdict::Accept, "").await;
    let (_, new_event) = full(&mut rp, &after).await;
    let new_event = new_event.expect("outcome event");
    assert_eq!(new_event.key_id, new.id);
    verify::verify_event(&new_event, &published).expect("new event");
}

/// The device key as `GetDevice` publishes it.
async fn public_key(rp: &mut RpClient, device_id: &str) -> Vec<u8> {
    rp.get_device(GetDeviceRequest {
        device_id: device_id.to_owned(),
    })
    .await
    .expect("device")
    .into_inner()
    .device
    .expect("device")
    .public_key
}

async fn next_confirmation(stream: &mut assent_tests::DeviceStream) -> ConfirmationRequest {
    match stream.next().await.expect("stream") {
        Some(Body::ConfirmationRequest(request)) => request,
        other => panic!("expected a confirmation request, got {other:?}"),
    }
}

async fn decisions_verify_from_relying_party_data_alone(db: TestDb) {
    let server = TestServer::start_with(&db, |c| c.create_burst = 1000).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let phone = TestDevice::enroll(&server, &app, "alice").await;
    let key = public_key(&mut rp, &phone.device_id).await;
    let cases = [
        (SignedVerdict::Accept, "", TransactionState::Accepted, ""),
        (SignedVerdict::Deny, "", TransactionState::Denied, ""),
        (
            SignedVerdict::Deny,
            "not_me",
            TransactionState::Denied,
            "not_me",
        ),
        (
            SignedVerdict::Deny,
            "policy",
            TransactionState::Denied,
            "policy",
        ),
    ];
    for (verdict, reason, state, recorded) in cases {
        let id = decided_otp(&server, &mut rp, &phone, verdict, reason).await;
        let (tx, _) = full(&mut rp, &id).await;
        assert_eq!((tx.state(), tx.reason.as_str()), (state, recorded));
        let evidence = tx.evidence.as_ref().expect("evidence");
        assert_eq!(evidence.device_public_key, key);
        assert_eq!(evidence.reason, reason);
        let key_id = verify::verify_decision(&tx, Some(&key)).expect("the decision verifies");
        assert_eq!(key_id, evidence.device_key_id);
        // What the device signed cannot be swapped for another verdict.
        let mut forged = tx.clone();
        let flipped = match verdict {
            SignedVerdict::Accept => assent_proto::v1::Decision::Deny,
            SignedVerdict::Deny => assent_proto::v1::Decision::Accept,
        };
        forged.evidence.as_mut().unwrap().decision = flipped.into();
        assert!(verify::verify_decision(&forged, Some(&key)).is_err());
    }
    // A wrong pick under number matching is recorded DENIED (wrong_number),
    // and verifies as what the device signed: an accept with its pick. (Bob:
    // alice's `not_me` above blocks pushes to her for a while.)
    let tablet = TestDevice::enroll(&server, &app, "bob").await;
    let key = public_key(&mut rp, &tablet.device_id).await;
    let created = rp
        .create_push_authentication(CreatePushAuthenticationRequest {
            user_id: "bob".to_owned(),
            message: "Log in?".to_owned(),
            number_matching: true,
            binding: BINDING.to_vec(),
            ..Default::default()
        })
        .await
        .expect("push")
        .into_inner();
    let mut stream = tablet.connect(&server).await.expect("connect");
    let request = next_confirmation(&mut stream).await;
    let wrong = request
        .number_choices
        .iter()
        .copied()
        .find(|&n| n != created.number)
        .unwrap();
    let decision = tablet.decision_with_number(&request, SignedVerdict::Accept, "", Some(wrong));
    stream.decide(decision).await;
    let (tx, last) = full(&mut rp, &created.transaction_id).await;
    assert_eq!(
        (tx.state(), tx.reason.as_str()),
        (TransactionState::Denied, "wrong_number")
    );
    let evidence = tx.evidence.as_ref().unwrap();
    assert_eq!(evidence.decision(), assent_proto::v1::Decision::Accept);
    assert_eq!(evidence.picked_number, Some(wrong));
    verify::verify_decision(&tx, Some(&key)).expect("wrong_number verifies as signed");
    let last = last.expect("outcome event");
    assert_eq!(last.binding, BINDING);
    verify::verify_event(&last, &keys(&mut rp).await).expect("outcome event");
}

async fn wait_transaction_returns_at_the_outcome_or_the_timeout(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let phone = TestDevice::enroll(&server, &app, "alice").await;
    let created = rp
        .create_otp_authentication(otp_request(b""))
        .await
        .unwrap()
        .into_inner();
    // The timeout: the current state, flagged.
    let started = Instant::now();
    let waited = rp
        .wait_transaction(WaitTransactionRequest {
            transaction_id: created.transaction_id.clone(),
            timeout_ms: 300,
        })
        .await
        .unwrap()
        .into_inner();
    let took = started.elapsed();
    assert!(waited.timed_out);
    assert_eq!(
        waited.transaction.unwrap().state(),
        TransactionState::Pending
    );
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // The outcome: the wait returns as soon as it is decided.
    let mut waiter = rp.clone();
    let id = created.transaction_id.clone();
    let waiting = tokio::spawn(async move {
        let answer = waiter
            .wait_transaction(WaitTransactionRequest {
                transaction_id: id,
                timeout_ms: 20_000,
            })
            .await;
        (answer, Instant::now())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut stream = phone.connect(&server).await.expect("connect");
    let request = stream.scan(&created.otp).await;
    stream
        .decide(phone.decision(&request, SignedVerdict::Accept, ""))
        .await;
    let decided_at = Instant::now();
    let (answer, returned_at) = within(10, "the wait", waiting).await.unwrap();
    let answer = answer.expect("wait").into_inner();
    assert!(!answer.timed_out);
    assert_eq!(
        answer.transaction.unwrap().state(),
        TransactionState::Accepted
    );
    let late = returned_at.saturating_duration_since(decided_at);
    assert!(
        late < Duration::from_millis(500),
        "returned {late:?} after the outcome"
    );
    verify::verify_event(&answer.last_event.unwrap(), &keys(&mut rp).await).unwrap();
    // A bad timeout is refused with the field named.
    let refused = rp
        .wait_transaction(WaitTransactionRequest {
            transaction_id: created.transaction_id.clone(),
            timeout_ms: 600_000,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let info = refused.get_details_error_info().expect("ErrorInfo");
    assert_eq!(
        info.metadata.get("field").map(String::as_str),
        Some("timeout_ms")
    );
}

async fn subscribe_from_the_head_and_beyond_it(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let first = rp
        .create_otp_authentication(otp_request(b""))
        .await
        .unwrap()
        .into_inner();
    let head = events(&mut rp, 1).await[0].cursor;
    let mut live = rp
        .subscribe(SubscribeRequest {
            from_head: true,
            ..Default::default()
        })
        .await
        .expect("from the head")
        .into_inner();
    let second = rp
        .create_otp_authentication(otp_request(b""))
        .await
        .unwrap()
        .into_inner();
    let event = within(10, "a new event", live.message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.transaction_id, second.transaction_id);
    assert_ne!(event.transaction_id, first.transaction_id);
    assert!(event.cursor > head);
    // A cursor nobody was given is out of range; so is a head with one.
    for request in [
        SubscribeRequest {
            after_cursor: event.cursor + 1_000_000_000,
            from_head: false,
        },
        SubscribeRequest {
            after_cursor: event.cursor,
            from_head: true,
        },
    ] {
        let refused = rp.subscribe(request).await.expect_err("refused");
        assert!(
            matches!(refused.code(), Code::OutOfRange | Code::InvalidArgument),
            "{refused:?}"
        );
        assert!(refused.get_details_error_info().is_some());
    }
    // The newest cursor itself resumes fine.
    rp.subscribe(SubscribeRequest {
        after_cursor: event.cursor,
        from_head: false,
    })
    .await
    .expect("resume at the newest cursor");
}

async fn a_draining_server_ends_streams_unavailable(db: TestDb) {
    let mut server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let mut stream = rp
        .subscribe(SubscribeRequest::default())
        .await
        .unwrap()
        .into_inner();
    let stopping = tokio::spawn(async move {
        server.stop().await;
    });
    let ended = within(10, "the stream's end", stream.message()).await;
    let status = ended.expect_err("the stream ends with a status");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.get_details_retry_info().is_some());
    within(10, "the server's stop", stopping).await.unwrap();
}

async fn refusals_carry_error_info_and_readable_messages(db: TestDb) {
    let server = TestServer::start_with(&db, |c| {
        c.create_burst = 4;
        c.create_rate_per_second = 0.01;
    })
    .await;
    let app = TestApp::create(&db, "Example Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let _phone = TestDevice::enroll(&server, &app, "alice").await;
    let push = |user: &str| CreatePushAuthenticationRequest {
        user_id: user.to_owned(),
        message: "Log in?".to_owned(),
        ..Default::default()
    };
    let nobody = rp
        .create_push_authentication(push("bob"))
        .await
        .unwrap_err();
    assert_eq!(nobody.code(), Code::FailedPrecondition);
    let info = nobody.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "NO_ENROLLED_DEVICE");
    assert_eq!(info.domain, "assent.v1");
    assert_eq!(
        info.metadata.get("user_id").map(String::as_str),
        Some("bob")
    );
    let open = rp
        .create_push_authentication(push("alice"))
        .await
        .unwrap()
        .into_inner();
    let again = rp
        .create_push_authentication(push("alice"))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::ResourceExhausted);
    let info = again.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "PUSH_ALREADY_OPEN");
    assert_eq!(
        info.metadata.get("transaction_id"),
        Some(&open.transaction_id),
        "the open push's id, for a program"
    );
    assert!(again.get_details_retry_info().is_some());
    let limited = rp
        .create_otp_authentication(otp_request(b""))
        .await
        .unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted);
    assert_eq!(
        limited.get_details_error_info().unwrap().reason,
        "CREATION_RATE_LIMITED"
    );
    let retry = limited.get_details_retry_info().expect("RetryInfo");
    assert!(retry.retry_delay.is_some_and(|d| d > Duration::ZERO));
    let too_long = rp
        .create_otp_authentication(otp_request(&[7; 65]))
        .await
        .unwrap_err();
    assert_eq!(too_long.code(), Code::InvalidArgument);
    assert_eq!(
        too_long.get_details_error_info().unwrap().metadata["field"],
        "binding"
    );
    for status in [&nobody, &again, &limited, &too_long] {
        let message = status.message();
        assert!(!message.contains("UserId("), "{message}");
        assert!(!message.contains("+00:00"), "{message}");
    }
    // A lower-case scheme is the same scheme.
    let mut lower = assent_proto::v1::relying_party_service_client::RelyingPartyServiceClient::new(
        server.channel().await,
    );
    let mut request = tonic::Request::new(ListServerKeysRequest {});
    request.metadata_mut().insert(
        "authorization",
        format!("bearer {}", app.api_key).parse().unwrap(),
    );
    lower
        .list_server_keys(request)
        .await
        .expect("lower-case bearer");
    let missing = lower
        .list_server_keys(ListServerKeysRequest {})
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert!(missing.message().contains("ASSENT_API_KEY"));
    assert_eq!(
        missing.get_details_error_info().unwrap().reason,
        "UNAUTHENTICATED"
    );
}

assent_tests::on_both_engines!(
    every_event_is_signed_and_carries_the_binding,
    old_events_still_verify_after_a_key_rotation,
    decisions_verify_from_relying_party_data_alone,
    wait_transaction_returns_at_the_outcome_or_the_timeout,
    subscribe_from_the_head_and_beyond_it,
    a_draining_server_ends_streams_unavailable,
    refusals_carry_error_info_and_readable_messages,
);
