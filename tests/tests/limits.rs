//! Limits that must hold under races: one live stream per device, and the
//! wrong-OTP cooling-off counted atomically.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use assent_proto::v1::CreateOtpAuthenticationRequest;
use assent_server::domain::{Otp, TransactionId};
use assent_server::service::ServiceError;
use assent_tests::{InProcess, TestApp, TestDb, TestDevice, TestServer, rp_client, seeded, within};
use chrono::Utc;
use tonic::Code;

async fn a_second_stream_of_a_device_replaces_the_first(db: TestDb) {
    let server = TestServer::start(&db).await;
    // On PostgreSQL the newer stream opens on another replica.
    let other = if db.is_sqlite() {
        None
    } else {
        Some(TestServer::start(&db).await)
    };
    let app = TestApp::create(&db, "Shop").await;
    let device = TestDevice::enroll(&server, &app, "alice").await;
    let mut first = device.connect(&server).await.expect("first stream");
    let mut second = device
        .connect(other.as_ref().unwrap_or(&server))
        .await
        .expect("second stream");
    let ended = within(5, "the first stream to be replaced", async {
        loop {
            match first.next().await {
                Ok(Some(_)) => {}
                other => return other,
            }
        }
    })
    .await;
    let status = ended.expect_err("the replaced stream is told why");
    assert_eq!(status.code(), Code::Aborted);
    assert!(
        status.message().contains("newer stream"),
        "{}",
        status.message()
    );
    let mut rp = rp_client(other.as_ref().unwrap_or(&server), &app.api_key).await;
    let created = rp
        .create_otp_authentication(CreateOtpAuthenticationRequest {
            message: "Log in?".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    second.scan(&created.otp).await;
}

async fn parallel_wrong_otps_of_one_device_get_at_most_five_lookups(db: TestDb) {
    let world = Arc::new(InProcess::new(db.store().await, Utc::now()));
    let caller = world.application("Shop").await;
    let mut rng = seeded(5);
    let phone = world.enroll(&caller, "alice", &mut rng).await;
    let attempts: Vec<_> = (0..50)
        .map(|n| {
            let world = Arc::clone(&world);
            let device = phone.device.clone();
            tokio::spawn(async move {
                let mut rng = seeded(100 + n);
                let wrong = Otp::generate(&mut rng, TransactionId::random()).expose();
                world
                    .services
                    .confirmations
                    .submit_otp(&device, &wrong, &mut rng)
                    .await
            })
        })
        .collect();
    let (mut looked_up, mut cooled) = (0, 0);
    for attempt in attempts {
        match attempt.await.unwrap() {
            Err(ServiceError::OtpRefused) => looked_up += 1,
            Err(ServiceError::ResourceExhausted(_)) => cooled += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((looked_up, cooled), (5, 45));
}

assent_tests::on_both_engines!(
    a_second_stream_of_a_device_replaces_the_first,
    parallel_wrong_otps_of_one_device_get_at_most_five_lookups,
);
