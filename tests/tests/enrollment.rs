//! Enrollment: single-use codes (also under a race), proof of possession,
//! weak keys, keys unique per application, throttled guessing, visibility.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use assent_proto::signing;
use assent_proto::v1::device_service_client::DeviceServiceClient;
use assent_proto::v1::{CreateEnrollmentRequest, EnrollRequest, ListDevicesRequest};
use assent_tests::{TestApp, TestDb, TestDevice, TestServer, rp_client};
use ed25519_dalek::{Signer, SigningKey};
use tonic::Code;

async fn code_for(server: &TestServer, app: &TestApp, user: &str) -> String {
    rp_client(server, &app.api_key)
        .await
        .create_enrollment(CreateEnrollmentRequest {
            user_id: user.to_owned(),
            ttl_seconds: 0,
        })
        .await
        .expect("create enrollment")
        .into_inner()
        .code
}

async fn an_enrollment_code_works_once(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Shop").await;
    let code = code_for(&server, &app, "alice").await;
    let device = TestDevice::enroll_with_code(&server, &code)
        .await
        .expect("first use");
    assert_eq!(device.user_id, "alice");
    assert_eq!(device.application_id, app.id);
    let again = TestDevice::enroll_with_code(&server, &code)
        .await
        .err()
        .expect("second use must fail");
    assert_eq!(again.code(), Code::NotFound);
    assert!(again.message().contains("enrollment code"));
}

async fn a_bad_proof_is_refused_and_still_uses_up_the_code(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Shop").await;
    let code = code_for(&server, &app, "alice").await;
    let key = SigningKey::from_bytes(&[9u8; 32]);
    let other = SigningKey::from_bytes(&[10u8; 32]);
    let public_key = key.verifying_key().to_bytes().to_vec();
    let proof = other.sign(&signing::enroll_bytes(&code, &public_key, "kiosk"));
    let status = DeviceServiceClient::new(server.channel().await)
        .enroll(EnrollRequest {
            code: code.clone(),
            public_key,
            device_name: "kiosk".to_owned(),
            proof: proof.to_bytes().to_vec(),
        })
        .await
        .expect_err("a proof by another key must be refused");
    assert_eq!(status.code(), Code::PermissionDenied);
    let retry = TestDevice::enroll_with_code(&server, &code)
        .await
        .err()
        .expect("code used up");
    assert_eq!(retry.code(), Code::NotFound);
    let devices = rp_client(&server, &app.api_key)
        .await
        .list_devices(ListDevicesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .devices;
    assert!(devices.is_empty(), "no device was created");
}

async fn a_weak_public_key_is_refused_and_uses_up_the_code(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Shop").await;
    let code = code_for(&server, &app, "alice").await;
    let code_again = code.clone();
    // The identity point: a small-order key that "verifies" forged signatures.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    let status = DeviceServiceClient::new(server.channel().await)
        .enroll(EnrollRequest {
            code,
            public_key: weak.to_vec(),
            device_name: "kiosk".to_owned(),
            proof: vec![0; 64],
        })
        .await
        .expect_err("a weak key must be refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("weak"));
    let retry = TestDevice::enroll_with_code(&server, &code_again)
        .await
        .err()
        .expect("a weak-key attempt uses up the code");
    assert_eq!(retry.code(), Code::NotFound);
}

/// Enrolls `key` with `code` (proof made with the key itself).
async fn enroll_key(
    server: &TestServer,
    code: &str,
    key: &SigningKey,
) -> Result<assent_proto::v1::EnrollResponse, tonic::Status> {
    let public_key = key.verifying_key().to_bytes().to_vec();
    let proof = key.sign(&signing::enroll_bytes(code, &public_key, "kiosk"));
    DeviceServiceClient::new(server.channel().await)
        .enroll(EnrollRequest {
            code: code.to_owned(),
            public_key,
            device_name: "kiosk".to_owned(),
            proof: proof.to_bytes().to_vec(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn a_public_key_is_unique_within_its_application_only(db: TestDb) {
    let server = TestServer::start(&db).await;
    let shop = TestApp::create(&db, "Shop").await;
    let bank = TestApp::create(&db, "Bank").await;
    let key = SigningKey::from_bytes(&[21u8; 32]);
    let first = code_for(&server, &shop, "alice").await;
    enroll_key(&server, &first, &key)
        .await
        .expect("first enrollment");
    // Another application learns nothing: the same key enrolls there too.
    let elsewhere = code_for(&server, &bank, "alice").await;
    enroll_key(&server, &elsewhere, &key)
        .await
        .expect("the same key in another application");
    let again = code_for(&server, &shop, "bob").await;
    let duplicate = enroll_key(&server, &again, &key)
        .await
        .expect_err("the same key twice in one application");
    assert_eq!(duplicate.code(), Code::FailedPrecondition);
}

async fn two_devices_redeeming_one_code_at_once_have_exactly_one_winner(db: TestDb) {
    // Every round's loser is a refused attempt: allow them all.
    let server = TestServer::start_with(&db, |config| config.enroll_refusal_burst = 1000).await;
    let app = TestApp::create(&db, "Shop").await;
    for round in 0..40u8 {
        let code = code_for(&server, &app, "alice").await;
        let (a, b) = (
            SigningKey::from_bytes(&[round; 32]),
            SigningKey::from_bytes(&[round.wrapping_add(100); 32]),
        );
        let (left, right) = tokio::join!(
            enroll_key(&server, &code, &a),
            enroll_key(&server, &code, &b)
        );
        assert_eq!(
            usize::from(left.is_ok()) + usize::from(right.is_ok()),
            1,
            "round {round}: {left:?} / {right:?}"
        );
        let loser = left.err().or(right.err()).expect("one loser");
        assert_eq!(loser.code(), Code::NotFound);
    }
    let devices = rp_client(&server, &app.api_key)
        .await
        .list_devices(ListDevicesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .devices;
    assert_eq!(devices.len(), 40);
}

async fn guessing_enrollment_codes_is_throttled_per_address(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Shop").await;
    let key = SigningKey::from_bytes(&[33u8; 32]);
    let real = code_for(&server, &app, "alice").await;
    let mut refused = 0;
    let throttled = loop {
        // A well-formed code that names no enrollment.
        let guess = assent_server::domain::EnrollmentCode::generate(
            &mut rand::rng(),
            assent_server::domain::EnrollmentId::random(),
        )
        .expose();
        let status = enroll_key(&server, &guess, &key)
            .await
            .expect_err("a guess");
        if status.code() == Code::ResourceExhausted {
            break status;
        }
        assert_eq!(status.code(), Code::NotFound);
        refused += 1;
        assert!(refused <= 10, "guessing is never throttled");
    };
    assert_eq!(refused, 10, "ten refusals are allowed at once");
    assert!(
        throttled.message().contains("retry in"),
        "{}",
        throttled.message()
    );
    // While throttled, even a real code is not looked up (and not spent).
    let blocked = enroll_key(&server, &real, &key)
        .await
        .expect_err("throttled");
    assert_eq!(blocked.code(), Code::ResourceExhausted);
}

async fn an_enrollment_is_visible_to_the_application_as_an_event(db: TestDb) {
    use assent_proto::v1::SubscribeRequest;
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let mut events = rp
        .subscribe(SubscribeRequest {
            after_cursor: 0,
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    let device = TestDevice::enroll(&server, &app, "alice").await;
    let event = assent_tests::within(5, "device.enrolled", async {
        loop {
            let event = events.message().await.expect("stream").expect("an event");
            if event.r#type == "device.enrolled" {
                return event;
            }
        }
    })
    .await;
    assert_eq!(event.device_id, device.device_id);
    assert_eq!(event.user_id, "alice");
}

assent_tests::on_both_engines!(
    an_enrollment_code_works_once,
    a_bad_proof_is_refused_and_still_uses_up_the_code,
    a_weak_public_key_is_refused_and_uses_up_the_code,
    a_public_key_is_unique_within_its_application_only,
    two_devices_redeeming_one_code_at_once_have_exactly_one_winner,
    guessing_enrollment_codes_is_throttled_per_address,
    an_enrollment_is_visible_to_the_application_as_an_event,
);
