//! Catalogue #34: refused API keys and refused enrollment attempts are
//! throttled per source address, across the replicas of one database: a
//! guesser alternating between two replicas gets the configured burst in
//! all, not per replica; once throttled, even a right key or code from the
//! address is refused (`RESOURCE_EXHAUSTED` with its reason and the wait),
//! while another address (127.0.0.2) is served.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::IpAddr;

use assent_proto::signing;
use assent_proto::v1::device_service_client::DeviceServiceClient;
use assent_proto::v1::{EnrollRequest, ListDevicesRequest};
use assent_server::ServerConfig;
use assent_tests::harness::rp_client_on;
use assent_tests::{TestApp, TestDb, TestServer, enrollment_code, rp_client};
use ed25519_dalek::{Signer as _, SigningKey};
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

/// A channel to `server` whose connections come from `from`.
async fn channel_from(server: &TestServer, from: &str) -> Channel {
    Endpoint::from_shared(server.url())
        .unwrap()
        .local_address(Some(from.parse::<IpAddr>().unwrap()))
        .connect()
        .await
        .unwrap()
}

/// The reason of a refusal (`google.rpc.ErrorInfo`).
fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

/// Two replicas on one PostgreSQL database, a small refusal allowance.
async fn replicas(db: &TestDb, adjust: fn(&mut ServerConfig)) -> (TestServer, TestServer) {
    let first = TestServer::start_with(db, adjust).await;
    let second = TestServer::start_with(db, adjust).await;
    (first, second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_34_refused_api_keys_are_throttled_per_source_across_replicas() {
    let db = TestDb::create().await;
    let app = TestApp::create(&db, "Shop").await;
    let (first, second) = replicas(&db, |c| {
        c.api_key_refusal_burst = 4;
        c.api_key_refusals_per_minute = 0.5;
    })
    .await;
    let wrong = format!("{}x", app.api_key);
    let guessers = [
        rp_client_on(channel_from(&first, "127.0.0.1").await, &wrong),
        rp_client_on(channel_from(&second, "127.0.0.1").await, &wrong),
    ];
    let mut refused = 0;
    let mut throttled = None;
    for round in 0..20 {
        let mut guesser = guessers[round % 2].clone();
        let status = guesser
            .list_devices(ListDevicesRequest::default())
            .await
            .expect_err("a wrong key");
        match status.code() {
            Code::Unauthenticated => refused += 1,
            Code::ResourceExhausted => {
                throttled = Some(status);
                // Both replicas hold the address back now.
                let mut other = guessers[(round + 1) % 2].clone();
                let also = other
                    .list_devices(ListDevicesRequest::default())
                    .await
                    .expect_err("throttled on the other replica too");
                assert_eq!(also.code(), Code::ResourceExhausted, "{also:?}");
                break;
            }
            other => panic!("unexpected {other:?}: {status:?}"),
        }
    }
    // The burst of 4 is shared: 2 per replica, alternating.
    assert_eq!(refused, 4, "refused keys before the throttle");
    let throttled = throttled.expect("never throttled");
    assert_eq!(reason(&throttled), "API_KEY_RATE_LIMITED");
    assert!(throttled.message().contains("retry in"), "{throttled:?}");
    // The right key from the throttled address is held back too…
    let mut right_here = rp_client_on(channel_from(&first, "127.0.0.1").await, &app.api_key);
    let held = right_here
        .list_devices(ListDevicesRequest::default())
        .await
        .expect_err("the address is throttled");
    assert_eq!(held.code(), Code::ResourceExhausted);
    // …and served from another address, on either replica.
    for server in [&first, &second] {
        let mut elsewhere = rp_client_on(channel_from(server, "127.0.0.2").await, &app.api_key);
        elsewhere
            .list_devices(ListDevicesRequest::default())
            .await
            .expect("another address is served");
    }
}

/// An enrollment attempt with `code`, from `channel`.
async fn enroll(channel: Channel, code: &str) -> Result<(), tonic::Status> {
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let public_key = key.verifying_key().to_bytes().to_vec();
    let proof = key.sign(&signing::enroll_bytes(code, &public_key, "kiosk"));
    DeviceServiceClient::new(channel)
        .enroll(EnrollRequest {
            code: code.to_owned(),
            public_key,
            device_name: "kiosk".to_owned(),
            proof: proof.to_bytes().to_vec(),
        })
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_34_refused_enrollments_are_throttled_per_source_across_replicas() {
    let db = TestDb::create().await;
    let app = TestApp::create(&db, "Shop").await;
    let (first, second) = replicas(&db, |c| {
        c.enroll_refusal_burst = 6;
        c.enroll_refusals_per_minute = 0.5;
    })
    .await;
    let channels = [
        channel_from(&first, "127.0.0.1").await,
        channel_from(&second, "127.0.0.1").await,
    ];
    let mut refused = 0;
    for round in 0..20 {
        let guess = assent_server::domain::EnrollmentCode::generate(
            &mut rand::rng(),
            assent_server::domain::EnrollmentId::random(),
        )
        .expose();
        let status = enroll(channels[round % 2].clone(), &guess)
            .await
            .expect_err("a guess");
        if status.code() == Code::ResourceExhausted {
            assert_eq!(reason(&status), "ENROLLMENT_RATE_LIMITED");
            break;
        }
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        refused += 1;
    }
    assert_eq!(refused, 6, "the burst of 6 is shared: 3 per replica");
    let mut rp = rp_client(&first, &app.api_key).await;
    let real = enrollment_code(&mut rp, "alice").await;
    let held = enroll(channels[0].clone(), &real)
        .await
        .expect_err("the address is throttled");
    assert_eq!(held.code(), Code::ResourceExhausted);
    enroll(channel_from(&second, "127.0.0.2").await, &real)
        .await
        .expect("another address enrolls with the real code");
}
