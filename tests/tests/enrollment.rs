//! Enrollment: single-use codes, proof of possession, weak keys.

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

async fn a_weak_public_key_is_refused(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Shop").await;
    let code = code_for(&server, &app, "alice").await;
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
}

assent_tests::on_both_engines!(
    an_enrollment_code_works_once,
    a_bad_proof_is_refused_and_still_uses_up_the_code,
    a_weak_public_key_is_refused,
);
