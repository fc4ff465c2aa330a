//! Catalogue cases at the device's side (docs/security.md, "Attack and
//! fault classes"), each test named after its case: #31 the `Connect`
//! handshake refuses every hello but the device's own over this stream's
//! challenge, and a refused hello changes nothing for the real device; #15
//! signatures of the wrong length are refused as malformed, never checked;
//! #22 a request that expired while its device was away is not asked
//! again, and a late decision on it is answered with its outcome, not
//! applied.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use assent_proto::signing::{self, SignedVerdict};
use assent_proto::v1::device_service_client::DeviceServiceClient;
use assent_proto::v1::server_message::Body;
use assent_proto::v1::{
    AgentMessage, CreateOtpAuthenticationRequest, CreatePushAuthenticationRequest, EnrollRequest,
    Hello, ServerMessage, SignedDecision, SubmitOtp, TransactionState, agent_message,
};
use assent_server::domain::ManualClock;
use assent_tests::{
    DeviceStream, RpClient, TestApp, TestDb, TestDevice, TestServer, device, enrollment_code,
    rp_client, transaction, within,
};
use bytes::Bytes;
use ed25519_dalek::{Signer, SigningKey};
use rand::RngCore;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

/// A `Connect` stream that has received its challenge and sent nothing.
struct Handshake {
    sender: mpsc::Sender<AgentMessage>,
    inbound: Streaming<ServerMessage>,
    nonce: Vec<u8>,
}

impl Handshake {
    async fn open(server: &TestServer) -> Self {
        let (sender, receiver) = mpsc::channel(16);
        let mut inbound = DeviceServiceClient::new(server.channel().await)
            .connect(ReceiverStream::new(receiver))
            .await
            .expect("Connect")
            .into_inner();
        let first = within(5, "the challenge", inbound.message()).await;
        let Some(Body::Challenge(challenge)) = first.expect("stream").expect("a message").body
        else {
            panic!("the server speaks first, with a challenge");
        };
        Self {
            sender,
            inbound,
            nonce: challenge.nonce,
        }
    }

    async fn send(&self, body: Option<agent_message::Body>) {
        self.sender
            .send(AgentMessage { body })
            .await
            .expect("stream open");
    }

    async fn hello(&self, device_id: &str, signature: Vec<u8>) {
        self.send(Some(agent_message::Body::Hello(Hello {
            device_id: device_id.to_owned(),
            signature,
        })))
        .await;
    }

    /// The status the server ends the stream with, within `secs`; a Ready
    /// or any other message first fails the test.
    async fn refusal(mut self, secs: u64) -> Status {
        let ended = within(secs, "the stream to end", self.inbound.message()).await;
        drop(self.sender);
        match ended {
            Err(status) => status,
            Ok(Some(message)) => panic!("expected a refusal, got {message:?}"),
            Ok(None) => panic!("the stream ended without a status"),
        }
    }
}

/// `key`'s signature over the hello bytes of `device_id` and `nonce`.
fn signed(key: &SigningKey, device_id: &str, nonce: &[u8]) -> Vec<u8> {
    key.sign(&signing::hello_bytes(device_id, nonce))
        .to_bytes()
        .to_vec()
}

fn fresh_key() -> SigningKey {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    SigningKey::from_bytes(&seed)
}

/// A second hello on an authenticated stream: answered with a rejection
/// that keeps the stream open, so it shows the stream still serves.
async fn still_serves(stream: &mut DeviceStream, device: &TestDevice) {
    stream
        .send(agent_message::Body::Hello(Hello {
            device_id: device.device_id.clone(),
            signature: vec![0; 64],
        }))
        .await;
    let answer = within(5, "the live stream's answer", stream.next()).await;
    assert!(
        matches!(answer, Ok(Some(Body::Rejection(_)))),
        "the device's own stream still serves: {answer:?}"
    );
}

async fn start(db: &TestDb) -> (TestServer, TestApp, RpClient) {
    let server = TestServer::start(db).await;
    let app = TestApp::create(db, "Shop").await;
    let rp = rp_client(&server, &app.api_key).await;
    (server, app, rp)
}

// ---- #31: the Connect handshake ----

async fn case_31_a_hello_naming_another_device_is_refused_and_that_device_keeps_its_stream(
    db: TestDb,
) {
    let (server, app, mut rp) = start(&db).await;
    let attacker = TestDevice::enroll(&server, &app, "mallory").await;
    let victim = TestDevice::enroll(&server, &app, "alice").await;
    let mut victims_stream = victim.connect(&server).await.expect("the victim connects");
    // The victim's id, signed with the attacker's own (enrolled) key.
    let handshake = Handshake::open(&server).await;
    let signature = signed(&attacker.key, &victim.device_id, &handshake.nonce);
    handshake.hello(&victim.device_id, signature).await;
    let status = handshake.refusal(5).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // The attacker's own hello bytes, sent under the victim's id.
    let handshake = Handshake::open(&server).await;
    let signature = signed(&attacker.key, &attacker.device_id, &handshake.nonce);
    handshake.hello(&victim.device_id, signature).await;
    let status = handshake.refusal(5).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // The victim's stream was not replaced (a refused hello registers
    // nothing): it still serves, and the victim is still shown connected.
    still_serves(&mut victims_stream, &victim).await;
    assert!(device(&mut rp, &victim.device_id).await.connected);
    assert!(!device(&mut rp, &attacker.device_id).await.connected);
}

async fn case_31_a_hello_signed_with_a_key_other_than_the_devices_is_refused(db: TestDb) {
    let (server, app, mut rp) = start(&db).await;
    let phone = TestDevice::enroll(&server, &app, "alice").await;
    let handshake = Handshake::open(&server).await;
    let signature = signed(&fresh_key(), &phone.device_id, &handshake.nonce);
    handshake.hello(&phone.device_id, signature).await;
    let status = handshake.refusal(5).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(!device(&mut rp, &phone.device_id).await.connected);
    // The device itself is not locked out by someone else's failure.
    let mut stream = phone.connect(&server).await.expect("the device connects");
    still_serves(&mut stream, &phone).await;
}

async fn case_31_a_replayed_hello_is_refused(db: TestDb) {
    let (server, app, _rp) = start(&db).await;
    let phone = TestDevice::enroll(&server, &app, "alice").await;
    // A genuine hello, as an eavesdropper on the first stream saw it.
    let first = Handshake::open(&server).await;
    let captured = signed(&phone.key, &phone.device_id, &first.nonce);
    first.hello(&phone.device_id, captured.clone()).await;
    let mut first = first;
    let ready = within(5, "Ready", first.inbound.message()).await;
    assert!(
        matches!(ready.unwrap().unwrap().body, Some(Body::Ready(_))),
        "the genuine hello is accepted"
    );
    // Replayed on a new stream, with a new challenge: refused, while the
    // first stream is open and after it has ended.
    let replay = Handshake::open(&server).await;
    assert_ne!(
        replay.nonce, first.nonce,
        "every stream has a fresh challenge"
    );
    replay.hello(&phone.device_id, captured.clone()).await;
    let status = replay.refusal(5).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    drop(first);
    let replay = Handshake::open(&server).await;
    replay.hello(&phone.device_id, captured).await;
    let status = replay.refusal(5).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

async fn case_31_anything_but_a_hello_first_ends_the_stream_unauthenticated(db: TestDb) {
    let (server, app, mut rp) = start(&db).await;
    let phone = TestDevice::enroll(&server, &app, "alice").await;
    let created = rp
        .create_otp_authentication(CreateOtpAuthenticationRequest {
            message: "Log in?".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let before_hello = [
        None,
        Some(agent_message::Body::SubmitOtp(SubmitOtp {
            request_id: 1,
            otp: created.otp.clone(),
        })),
        Some(agent_message::Body::Decision(SignedDecision {
            transaction_id: created.transaction_id.clone(),
            decision: assent_proto::v1::Decision::Accept.into(),
            signature: vec![0; 64],
            ..Default::default()
        })),
        Some(agent_message::Body::Unenroll(Default::default())),
    ];
    for body in before_hello {
        let handshake = Handshake::open(&server).await;
        handshake.send(body.clone()).await;
        let status = handshake.refusal(5).await;
        assert_eq!(status.code(), Code::Unauthenticated, "{body:?}: {status:?}");
    }
    // Nothing was scanned, decided or revoked.
    let tx = transaction(&mut rp, &created.transaction_id).await;
    assert_eq!(tx.state(), TransactionState::Pending);
    assert!(!device(&mut rp, &phone.device_id).await.revoked);
}

async fn case_31_a_garbled_hello_ends_the_stream_invalid_argument(db: TestDb) {
    let (server, app, _rp) = start(&db).await;
    let phone = TestDevice::enroll(&server, &app, "alice").await;
    // Not a device id; an id of no device.
    let handshake = Handshake::open(&server).await;
    let signature = signed(&phone.key, "not-a-uuid", &handshake.nonce);
    handshake.hello("not-a-uuid", signature).await;
    let status = handshake.refusal(5).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let unknown = uuid::Uuid::new_v4().to_string();
    let handshake = Handshake::open(&server).await;
    let signature = signed(&phone.key, &unknown, &handshake.nonce);
    handshake.hello(&unknown, signature).await;
    let status = handshake.refusal(5).await;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    // Bytes that are no AgentMessage at all, in valid gRPC framing.
    for garbage in [
        &b"\x0a\xff\xff\xff\xff\x0f"[..], // a length far past the end
        b"\x0a\x05\x0a\x03\xff\xfe\xfd",  // a device id that is not UTF-8
        b"\x08",                          // a truncated varint
    ] {
        let status = garbage_on_connect(&server, garbage).await;
        assert_eq!(
            status,
            Some("3".to_owned()),
            "INVALID_ARGUMENT for {garbage:?}"
        );
    }
    // The device connects as ever.
    phone.connect(&server).await.expect("the device connects");
}

/// Sends `message` as the first gRPC message of a `Connect` stream (an h2
/// client, so the bytes are exactly these) and returns the `grpc-status`
/// the stream ends with.
async fn garbage_on_connect(server: &TestServer, message: &[u8]) -> Option<String> {
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://{}/assent.v1.DeviceService/Connect",
            server.addr
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(message);
    // The stream stays open from this side: the server must end it.
    body.send_data(Bytes::from(framed), false).unwrap();
    let response = within(5, "the response", response).await.unwrap();
    let header = |map: &http::HeaderMap| {
        map.get("grpc-status")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    if let Some(status) = header(response.headers()) {
        return Some(status);
    }
    let mut received = response.into_body();
    within(5, "the response body", async {
        while let Some(Ok(chunk)) = received.data().await {
            let _ = received.flow_control().release_capacity(chunk.len());
        }
    })
    .await;
    let trailers = within(5, "the trailers", received.trailers()).await;
    drop(body);
    trailers.ok().flatten().as_ref().and_then(header)
}

async fn case_31_a_stream_without_a_hello_is_ended_at_the_hello_timeout(db: TestDb) {
    let (server, _app, _rp) = start(&db).await;
    // A client that ends its side without a hello: ended at once.
    let handshake = Handshake::open(&server).await;
    let Handshake {
        sender, inbound, ..
    } = handshake;
    drop(sender);
    let mut inbound = inbound;
    let ended = within(5, "the stream to end", inbound.message()).await;
    assert!(
        matches!(&ended, Err(s) if s.code() == Code::Unauthenticated),
        "{ended:?}"
    );
    // A client that keeps its side open and says nothing: ended at the
    // 10 s hello timeout, not before, not much after.
    let opened = Instant::now();
    let silent = Handshake::open(&server).await;
    let status = silent.refusal(15).await;
    let waited = opened.elapsed();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("hello"), "{status:?}");
    assert!(
        (Duration::from_secs(9)..Duration::from_secs(13)).contains(&waited),
        "ended after {waited:?}"
    );
}

// ---- #15: signatures of the wrong length ----

async fn case_15_signatures_of_the_wrong_length_are_refused_as_malformed(db: TestDb) {
    let (server, app, mut rp) = start(&db).await;
    let phone = TestDevice::enroll(&server, &app, "alice").await;
    // The hello.
    for length in [0, 32, 63, 65, 128] {
        let handshake = Handshake::open(&server).await;
        let mut signature = signed(&phone.key, &phone.device_id, &handshake.nonce);
        signature.resize(length, 0);
        handshake.hello(&phone.device_id, signature).await;
        let status = handshake.refusal(5).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{length}: {status:?}");
        assert!(status.message().contains("signature"), "{status:?}");
    }
    // A decision: refused, the stream carries on and the transaction is
    // still SCANNED; the right decision then decides it.
    let created = rp
        .create_otp_authentication(CreateOtpAuthenticationRequest {
            message: "Log in?".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut stream = phone.connect(&server).await.expect("connect");
    let request = stream.scan(&created.otp).await;
    let good = phone.decision(&request, SignedVerdict::Accept, "");
    for length in [0, 63, 65, 128] {
        let mut bad = good.clone();
        bad.signature.resize(length, 0);
        match stream.decide(bad).await {
            Body::Rejection(rejection) => {
                assert_eq!(rejection.code, Code::InvalidArgument as i32, "{length}");
                assert!(rejection.message.contains("signature"), "{rejection:?}");
                assert_eq!(rejection.transaction_id, created.transaction_id);
            }
            other => panic!("{length}: expected a rejection, got {other:?}"),
        }
        let tx = transaction(&mut rp, &created.transaction_id).await;
        assert_eq!(tx.state(), TransactionState::Scanned, "{length}");
    }
    match stream.decide(good).await {
        Body::DecisionResult(result) => {
            assert!(result.applied);
            assert_eq!(result.state(), TransactionState::Accepted);
        }
        other => panic!("expected the decision's result, got {other:?}"),
    }
    // An enrollment proof.
    let code = enrollment_code(&mut rp, "bob").await;
    let key = fresh_key();
    let public_key = key.verifying_key().to_bytes().to_vec();
    let proof = key.sign(&signing::enroll_bytes(&code, &public_key, "tablet"));
    for length in [0, 63, 65] {
        let mut bytes = proof.to_bytes().to_vec();
        bytes.resize(length, 0);
        let status = DeviceServiceClient::new(server.channel().await)
            .enroll(EnrollRequest {
                code: code.clone(),
                public_key: public_key.clone(),
                device_name: "tablet".to_owned(),
                proof: bytes,
            })
            .await
            .expect_err("a malformed proof is refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{length}: {status:?}");
        assert!(status.message().contains("proof"), "{status:?}");
    }
}

// ---- #22: a request that expired while its device was away ----

/// Whether the sweeper records an expiry before the device is back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sweeper {
    /// It runs every 100 ms: the expiry is recorded (its event written).
    Recorded,
    /// It does not run during the test: the transaction is stored SCANNED
    /// and is expired only by the time rule every read applies.
    NotYet,
}

async fn case_22_a_request_that_expired_while_the_device_was_away_is_not_asked_and_a_late_decision_is_not_applied(
    db: TestDb,
) {
    away_past_expiry(db, Sweeper::Recorded).await;
}

async fn case_22_the_same_before_the_sweeper_has_recorded_the_expiry(db: TestDb) {
    away_past_expiry(db, Sweeper::NotYet).await;
}

async fn away_past_expiry(db: TestDb, sweeper: Sweeper) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let server = TestServer::start_with_clock_and(&db, Arc::clone(&clock), |config| {
        if sweeper == Sweeper::NotYet {
            config.sweep_interval_ms = 3_600_000;
        }
    })
    .await;
    let app = TestApp::create(&db, "Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let phone = TestDevice::enroll(&server, &app, "alice").await;
    let create = |ttl_seconds: u32| CreateOtpAuthenticationRequest {
        message: "Log in?".to_owned(),
        ttl_seconds,
        ..Default::default()
    };
    let short = rp.create_otp_authentication(create(10)).await.unwrap();
    let long = rp.create_otp_authentication(create(600)).await.unwrap();
    let (short, long) = (short.into_inner(), long.into_inner());
    let mut stream = phone.connect(&server).await.expect("connect");
    let expiring = stream.scan(&short.otp).await;
    let open = stream.scan(&long.otp).await;
    // The device goes away with both scanned and undecided; time passes
    // for the server beyond the first one's lifetime.
    drop(stream);
    assent_tests::until_disconnected(&mut rp, &phone.device_id, 5).await;
    clock.advance(Duration::from_secs(11));
    let last_event = |rp: &mut RpClient| {
        let id = short.transaction_id.clone();
        let mut rp = rp.clone();
        async move {
            rp.get_transaction(assent_proto::v1::GetTransactionRequest { transaction_id: id })
                .await
                .unwrap()
                .into_inner()
                .last_event
                .unwrap()
                .r#type
        }
    };
    // The sweeper records the expiry; or nothing does before the device is
    // back (a read would: reads record what they find expired).
    if sweeper == Sweeper::Recorded {
        within(5, "the sweeper to record the expiry", async {
            while last_event(&mut rp).await != "transaction.expired" {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }
    // Back: it is asked again about the open one only.
    let mut stream = phone.connect(&server).await.expect("reconnect");
    let mut asked = Vec::new();
    while let Ok(Ok(Some(body))) =
        tokio::time::timeout(Duration::from_millis(700), stream.next()).await
    {
        asked.push(body);
    }
    let asked: Vec<String> = asked
        .iter()
        .map(|body| match body {
            Body::ConfirmationRequest(request) => request.transaction_id.clone(),
            other => panic!("expected only re-sent confirmations, got {other:?}"),
        })
        .collect();
    assert_eq!(
        asked,
        std::slice::from_ref(&long.transaction_id),
        "only the open request is asked again"
    );
    // A decision on the expired one, signed while the device was away:
    // answered with the outcome, not applied.
    let late = phone.decision(&expiring, SignedVerdict::Accept, "");
    match stream.decide(late).await {
        Body::DecisionResult(result) => {
            assert!(!result.applied, "{result:?}");
            assert_eq!(result.state(), TransactionState::Expired);
            assert_eq!(result.transaction_id, short.transaction_id);
        }
        other => panic!("expected the outcome, got {other:?}"),
    }
    let tx = transaction(&mut rp, &short.transaction_id).await;
    assert_eq!(tx.state(), TransactionState::Expired);
    assert!(tx.decision_signature.is_empty(), "no decision was recorded");
    let recorded = last_event(&mut rp).await;
    assert!(
        ["transaction.expired", "transaction.scanned"].contains(&recorded.as_str()),
        "no outcome but the expiry is recorded: {recorded}"
    );
    // The open one is decided as ever (the device may first be told that
    // the expired one was withdrawn, once its expiry is recorded).
    let mut answer = stream
        .decide(phone.decision(&open, SignedVerdict::Accept, ""))
        .await;
    while let Body::Cancellation(withdrawn) = &answer {
        assert_eq!(
            (withdrawn.transaction_id.as_str(), withdrawn.reason.as_str()),
            (short.transaction_id.as_str(), "expired")
        );
        answer = stream.next().await.expect("stream").expect("a message");
    }
    match answer {
        Body::DecisionResult(result) => assert!(result.applied),
        other => panic!("expected the result, got {other:?}"),
    }
}

async fn case_22_a_push_that_expired_before_its_device_connected_is_not_asked(db: TestDb) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let server = TestServer::start_with_clock(&db, Arc::clone(&clock)).await;
    let app = TestApp::create(&db, "Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let phone = TestDevice::enroll(&server, &app, "alice").await;
    let push = |ttl_seconds: u32| CreatePushAuthenticationRequest {
        user_id: "alice".to_owned(),
        message: "Log in?".to_owned(),
        ttl_seconds,
        ..Default::default()
    };
    let expired = rp
        .create_push_authentication(push(10))
        .await
        .unwrap()
        .into_inner();
    clock.advance(Duration::from_secs(11));
    within(5, "the sweeper to expire it", async {
        while transaction(&mut rp, &expired.transaction_id).await.state()
            != TransactionState::Expired
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // A push created now is the only one the device is asked about.
    let open = rp
        .create_push_authentication(push(60))
        .await
        .unwrap()
        .into_inner();
    let mut stream = phone.connect(&server).await.expect("connect");
    let mut asked = Vec::new();
    while let Ok(Ok(Some(body))) =
        tokio::time::timeout(Duration::from_millis(700), stream.next()).await
    {
        match body {
            Body::ConfirmationRequest(request) => asked.push(request.transaction_id),
            other => panic!("expected only confirmations, got {other:?}"),
        }
    }
    assert_eq!(asked, [open.transaction_id]);
}

// ---- #4: no oracle in words ----

async fn case_04_every_refused_otp_gets_the_same_status_and_message(db: TestDb) {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let server = TestServer::start_with_clock(&db, Arc::clone(&clock)).await;
    let app = TestApp::create(&db, "Shop").await;
    let other_app = TestApp::create(&db, "Other Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let mut other_rp = rp_client(&server, &other_app.api_key).await;
    let create = |ttl_seconds: u32, user_id: &str| CreateOtpAuthenticationRequest {
        message: "Log in?".to_owned(),
        ttl_seconds,
        user_id: user_id.to_owned(),
        ..Default::default()
    };
    let otp = |response: tonic::Response<assent_proto::v1::CreateOtpAuthenticationResponse>| {
        response.into_inner().otp
    };
    let expired = otp(rp.create_otp_authentication(create(10, "")).await.unwrap());
    let used = otp(rp.create_otp_authentication(create(600, "")).await.unwrap());
    let cancelled = rp.create_otp_authentication(create(600, "")).await.unwrap();
    let cancelled = cancelled.into_inner();
    rp.cancel_transaction(assent_proto::v1::CancelTransactionRequest {
        transaction_id: cancelled.transaction_id.clone(),
    })
    .await
    .unwrap();
    let foreign = otp(other_rp
        .create_otp_authentication(create(600, ""))
        .await
        .unwrap());
    let other_user = otp(rp
        .create_otp_authentication(create(600, "bob"))
        .await
        .unwrap());
    let unknown = {
        use base64::Engine as _;
        let alphabet = base64::engine::general_purpose::STANDARD;
        let mut bytes = alphabet.decode(&used).unwrap();
        bytes[0] ^= 1;
        alphabet.encode(&bytes)
    };
    clock.advance(Duration::from_secs(11));
    // Three refusals per device, so no cooling-off is reached.
    let first = TestDevice::enroll(&server, &app, "alice").await;
    let second = TestDevice::enroll(&server, &app, "alice").await;
    let mut streams = [
        first.connect(&server).await.expect("connect"),
        second.connect(&server).await.expect("connect"),
    ];
    streams[0].scan(&used).await;
    let mut refusals = Vec::new();
    for (class, otp, device) in [
        ("unknown", &unknown, 0),
        ("used", &used, 0),
        ("expired", &expired, 0),
        ("cancelled", &cancelled.otp, 1),
        ("another application's", &foreign, 1),
        ("another user's", &other_user, 1),
    ] {
        let stream = &mut streams[device];
        let mut answer = stream.submit(otp).await;
        // Withdrawals of what expired meanwhile may come first.
        while let Body::Cancellation(_) = answer {
            answer = stream.next().await.expect("stream").expect("a message");
        }
        match answer {
            Body::Rejection(rejection) => {
                refusals.push((class, rejection.code, rejection.message));
            }
            other => panic!("{class}: expected a rejection, got {other:?}"),
        }
    }
    let (_, code, message) = refusals[0].clone();
    assert_eq!(code, Code::NotFound as i32);
    for (class, other_code, other_message) in &refusals {
        assert_eq!(
            (*other_code, other_message),
            (code, &message),
            "the {class} OTP is refused like an unknown one"
        );
    }
}

assent_tests::on_both_engines!(
    case_04_every_refused_otp_gets_the_same_status_and_message,
    case_31_a_hello_naming_another_device_is_refused_and_that_device_keeps_its_stream,
    case_31_a_hello_signed_with_a_key_other_than_the_devices_is_refused,
    case_31_a_replayed_hello_is_refused,
    case_31_anything_but_a_hello_first_ends_the_stream_unauthenticated,
    case_31_a_garbled_hello_ends_the_stream_invalid_argument,
    case_31_a_stream_without_a_hello_is_ended_at_the_hello_timeout,
    case_15_signatures_of_the_wrong_length_are_refused_as_malformed,
    case_22_a_request_that_expired_while_the_device_was_away_is_not_asked_and_a_late_decision_is_not_applied,
    case_22_the_same_before_the_sweeper_has_recorded_the_expiry,
    case_22_a_push_that_expired_before_its_device_connected_is_not_asked,
);
