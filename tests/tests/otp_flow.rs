//! The OTP login flow end to end over real gRPC and PostgreSQL: accept, deny,
//! replay, cancellation, and what the relying party's subscriber sees.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use assent_proto::signing::SignedVerdict;
use assent_proto::v1::server_message::Body;
use assent_proto::v1::{
    CancelTransactionRequest, CreateOtpAuthenticationRequest, CreateOtpAuthenticationResponse,
    Event, SubscribeRequest, TransactionState,
};
use assent_tests::{
    RpClient, TestApp, TestDb, TestDevice, TestServer, rp_client, transaction, within,
};
use tonic::Code;

async fn create_otp(rp: &mut RpClient, user: &str) -> CreateOtpAuthenticationResponse {
    rp.create_otp_authentication(CreateOtpAuthenticationRequest {
        message: "Log in to Example Shop?".to_owned(),
        ttl_seconds: 60,
        context: [("browser".to_owned(), "Firefox".to_owned())].into(),
        user_id: user.to_owned(),
        ..Default::default()
    })
    .await
    .expect("create OTP authentication")
    .into_inner()
}

async fn state_of(rp: &mut RpClient, id: &str) -> TransactionState {
    transaction(rp, id).await.state()
}

/// Reads events of `transaction_id` until one of type `wanted` arrives.
async fn wait_for_event(
    events: &mut tonic::Streaming<Event>,
    transaction_id: &str,
    wanted: &str,
) -> Event {
    within(10, wanted, async {
        loop {
            let event = events.message().await.expect("stream").expect("open");
            if event.transaction_id == transaction_id && event.r#type == wanted {
                return event;
            }
        }
    })
    .await
}

async fn accept_path_subscriber_sees_scanned_then_accepted_with_ids(db: TestDb) {
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

    let created = create_otp(&mut rp, "").await;
    let request = stream.scan(&created.otp).await;
    assert_eq!(request.message, "Log in to Example Shop?");
    assert_eq!(request.application_name, "Example Shop");
    assert_eq!(
        request.context.get("browser").map(String::as_str),
        Some("Firefox")
    );
    assert_eq!(request.nonce.len(), 32);

    let scanned = wait_for_event(&mut events, &created.transaction_id, "transaction.scanned").await;
    assert_eq!(scanned.device_id, device.device_id);
    assert_eq!(scanned.user_id, "alice");

    let result = stream
        .decide(device.decision(&request, SignedVerdict::Accept, ""))
        .await;
    let Body::DecisionResult(result) = result else {
        panic!("expected a decision result, got {result:?}");
    };
    assert!(result.applied);
    assert_eq!(result.state(), TransactionState::Accepted);

    let accepted =
        wait_for_event(&mut events, &created.transaction_id, "transaction.accepted").await;
    assert_eq!(accepted.user_id, "alice");
    assert_eq!(accepted.device_id, device.device_id);
    assert!(accepted.cursor > scanned.cursor);

    let tx = transaction(&mut rp, &created.transaction_id).await;
    assert_eq!(tx.state(), TransactionState::Accepted);
    assert_eq!(tx.user_id, "alice");
    assert_eq!(tx.device_id, device.device_id);
    assert_eq!(
        tx.decision_signature.len(),
        64,
        "the signature is kept with the outcome"
    );
}

async fn deny_path_records_the_device_reason(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let device = TestDevice::enroll(&server, &app, "bob").await;
    let mut stream = device.connect(&server).await.expect("connect");
    let mut rp = rp_client(&server, &app.api_key).await;

    let created = create_otp(&mut rp, "bob").await;
    let request = stream.scan(&created.otp).await;
    let answer = stream
        .decide(device.decision(&request, SignedVerdict::Deny, "not_me"))
        .await;
    let Body::DecisionResult(result) = answer else {
        panic!("expected a decision result, got {answer:?}");
    };
    assert_eq!(result.state(), TransactionState::Denied);
    assert_eq!(result.reason, "not_me");
    let tx = transaction(&mut rp, &created.transaction_id).await;
    assert_eq!(tx.state(), TransactionState::Denied);
    assert_eq!(tx.reason, "not_me");
}

async fn otp_replay_is_refused_even_for_the_same_device(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let device = TestDevice::enroll(&server, &app, "carol").await;
    let mut stream = device.connect(&server).await.expect("connect");
    let mut rp = rp_client(&server, &app.api_key).await;

    let created = create_otp(&mut rp, "").await;
    stream.scan(&created.otp).await;
    let replay = stream.submit(&created.otp).await;
    let Body::Rejection(rejection) = replay else {
        panic!("a replayed OTP must be rejected, got {replay:?}");
    };
    assert_eq!(Code::from_i32(rejection.code), Code::NotFound);
    assert_eq!(
        state_of(&mut rp, &created.transaction_id).await,
        TransactionState::Scanned
    );
}

async fn otp_restricted_to_another_user_is_refused_like_an_unknown_one(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let device = TestDevice::enroll(&server, &app, "dave").await;
    let mut stream = device.connect(&server).await.expect("connect");
    let mut rp = rp_client(&server, &app.api_key).await;

    let for_erin = create_otp(&mut rp, "erin").await;
    let Body::Rejection(foreign) = stream.submit(&for_erin.otp).await else {
        panic!("an OTP for another user must be rejected");
    };
    let unknown_otp = {
        let mut bytes = base64_decode(&for_erin.otp);
        bytes[20] ^= 0xff;
        base64_encode(&bytes)
    };
    let Body::Rejection(unknown) = stream.submit(&unknown_otp).await else {
        panic!("a wrong OTP must be rejected");
    };
    assert_eq!(foreign.code, unknown.code, "no oracle: same code");
    assert_eq!(foreign.message, unknown.message, "no oracle: same message");
    assert_eq!(
        state_of(&mut rp, &for_erin.transaction_id).await,
        TransactionState::Pending
    );
}

async fn cancel_before_scan_ends_cancelled_and_the_otp_is_dead(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let device = TestDevice::enroll(&server, &app, "frank").await;
    let mut stream = device.connect(&server).await.expect("connect");
    let mut rp = rp_client(&server, &app.api_key).await;

    let created = create_otp(&mut rp, "").await;
    let cancelled = rp
        .cancel_transaction(CancelTransactionRequest {
            transaction_id: created.transaction_id.clone(),
        })
        .await
        .expect("cancel")
        .into_inner()
        .transaction
        .expect("transaction");
    assert_eq!(cancelled.state(), TransactionState::Cancelled);
    let Body::Rejection(rejection) = stream.submit(&created.otp).await else {
        panic!("a cancelled transaction's OTP must be rejected");
    };
    assert_eq!(Code::from_i32(rejection.code), Code::NotFound);
    let again = rp
        .cancel_transaction(CancelTransactionRequest {
            transaction_id: created.transaction_id.clone(),
        })
        .await
        .expect_err("a terminal transaction cannot be cancelled again");
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(
        state_of(&mut rp, &created.transaction_id).await,
        TransactionState::Cancelled
    );
}

async fn cancel_after_scan_reaches_the_device(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let device = TestDevice::enroll(&server, &app, "gina").await;
    let mut stream = device.connect(&server).await.expect("connect");
    let mut rp = rp_client(&server, &app.api_key).await;

    let created = create_otp(&mut rp, "").await;
    let request = stream.scan(&created.otp).await;
    rp.cancel_transaction(CancelTransactionRequest {
        transaction_id: created.transaction_id.clone(),
    })
    .await
    .expect("cancel");
    let Ok(Some(Body::Cancellation(cancellation))) = stream.next().await else {
        panic!("the device must be told of the cancellation");
    };
    assert_eq!(cancellation.transaction_id, request.transaction_id);
    assert_eq!(cancellation.reason, "cancelled");
    let late = stream
        .decide(device.decision(&request, SignedVerdict::Accept, ""))
        .await;
    let Body::DecisionResult(result) = late else {
        panic!("a late decision gets the final state, got {late:?}");
    };
    assert!(!result.applied);
    assert_eq!(result.state(), TransactionState::Cancelled);
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

assent_tests::on_both_engines!(
    accept_path_subscriber_sees_scanned_then_accepted_with_ids,
    deny_path_records_the_device_reason,
    otp_replay_is_refused_even_for_the_same_device,
    otp_restricted_to_another_user_is_refused_like_an_unknown_one,
    cancel_before_scan_ends_cancelled_and_the_otp_is_dead,
    cancel_after_scan_reaches_the_device,
);
