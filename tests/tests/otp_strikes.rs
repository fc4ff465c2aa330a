//! Issue 21 point 4: a device's valid OTPs are never refused by its own
//! in-flight strikes — twenty valid OTPs handed in by one device at once,
//! four wrong ones among them, are all scanned — while wrong ones stay
//! bounded to five per window, atomically; once cooled off, even a valid
//! OTP waits. On the use case, both engines (each replica shares the
//! device row, so the bound holds on every replica). And the scan that
//! skips its reservation: taken only by a stream whose OTPs have all been
//! valid, never by one that had a refusal, and falling back to the
//! reserved path when the kept copy is stale.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use assent_proto::signing::SignedVerdict;
use assent_proto::v1::server_message::Body;
use assent_proto::v1::{
    CancelTransactionRequest, CreateOtpAuthenticationRequest, CreateOtpAuthenticationResponse,
};
use assent_server::domain::{Context, Message};
use assent_server::service::{CreateOtpInput, ServiceError};
use assent_tests::metrics::{metric, server_with_metrics};
use assent_tests::{
    DeviceStream, InProcess, RpClient, TestApp, TestDb, TestDevice, rp_client, seeded,
};
use chrono::Utc;

fn otp_input() -> CreateOtpInput {
    CreateOtpInput {
        message: Message::parse("Log in?").unwrap(),
        ttl: Duration::from_secs(60),
        context: Context::default(),
        user_id: None,
        binding: None,
    }
}

async fn valid_otps_in_flight_take_no_strikes_and_wrong_ones_stay_bounded(db: TestDb) {
    let store = db.store().await;
    let world = Arc::new(InProcess::new(Arc::clone(&store), Utc::now()));
    let caller = world.application("Shop").await;
    let mut rng = seeded(21);
    let phone = Arc::new(world.enroll(&caller, "alice", &mut rng).await);
    let mut otps = Vec::new();
    for _ in 0..20 {
        let created = world
            .services
            .logins
            .create_otp_authentication(&caller, otp_input(), &mut rng)
            .await
            .unwrap();
        otps.push(created.otp.expose());
    }
    let submit = |otp: String, seed: u64| {
        let (world, phone) = (Arc::clone(&world), Arc::clone(&phone));
        tokio::spawn(async move {
            world
                .services
                .confirmations
                .submit_otp(&phone.device, &otp, &mut seeded(seed))
                .await
        })
    };
    let forge = |otp: &str| {
        // Another secret for the same transaction id.
        let mut forged = otp.to_owned();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        forged
    };
    // Twenty valid OTPs of one device at once, with four wrong ones among
    // them: every valid one is scanned, every wrong one refused.
    let valid: Vec<_> = otps
        .iter()
        .enumerate()
        .map(|(i, otp)| submit(otp.clone(), i as u64))
        .collect();
    let wrong: Vec<_> = (0..4)
        .map(|i| submit(forge(&otps[i]), 100 + i as u64))
        .collect();
    for (i, handle) in valid.into_iter().enumerate() {
        let scanned = handle.await.unwrap();
        assert!(scanned.is_ok(), "valid OTP {i} refused: {scanned:?}");
    }
    for handle in wrong {
        let refused = handle.await.unwrap();
        assert!(
            matches!(refused, Err(ServiceError::OtpRefused)),
            "{refused:?}"
        );
    }
    // Six more wrong ones at once: one is looked up (the fifth strike),
    // five wait for the window.
    let wrong: Vec<_> = (4..10)
        .map(|i| submit(forge(&otps[i]), 100 + i as u64))
        .collect();
    let (mut refused, mut waiting) = (0, 0);
    for handle in wrong {
        match handle.await.unwrap() {
            Err(ServiceError::OtpRefused) => refused += 1,
            Err(ServiceError::ResourceExhausted(_)) => waiting += 1,
            other => panic!("a wrong OTP: {other:?}"),
        }
    }
    assert_eq!((refused, waiting), (1, 5), "five wrong lookups per window");
    // Cooled off: even a valid OTP waits now.
    let fresh = world
        .services
        .logins
        .create_otp_authentication(&caller, otp_input(), &mut rng)
        .await
        .unwrap();
    let late = submit(fresh.otp.expose(), 999).await.unwrap();
    assert!(
        matches!(late, Err(ServiceError::ResourceExhausted(_))),
        "{late:?}"
    );
}

async fn create(rp: &mut RpClient) -> CreateOtpAuthenticationResponse {
    let request = CreateOtpAuthenticationRequest {
        message: "Log in?".to_owned(),
        ..Default::default()
    };
    rp.create_otp_authentication(request)
        .await
        .unwrap()
        .into_inner()
}

/// The server's `assent_otp_scans_unreserved_total`.
async fn unreserved(port: u16) -> u64 {
    let counted = metric(port, "assent_otp_scans_unreserved_total").await;
    counted.expect("the counter on /metrics") as u64
}

async fn only_a_stream_of_valid_otps_skips_the_reservation(db: TestDb) {
    let (server, port) = server_with_metrics(&db).await;
    let app = TestApp::create(&db, "Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let phone = TestDevice::enroll(&server, &app, "alice").await;
    let mut stream = phone.connect(&server).await.unwrap();
    // Each login to its end: the confirmation and the decision are the
    // same whichever way the scan went.
    let mut logins = Vec::new();
    for _ in 0..5 {
        logins.push(create(&mut rp).await);
    }
    let login = async |stream: &mut DeviceStream, otp: &str| {
        let request = stream.scan(otp).await;
        assert_eq!(request.message, "Log in?");
        let decision = phone.decision(&request, SignedVerdict::Accept, "");
        match stream.decide(decision).await {
            Body::DecisionResult(result) => assert!(result.applied, "{result:?}"),
            other => panic!("{other:?}"),
        }
    };
    // A new stream reserves its first lookup; the next ones skip it.
    login(&mut stream, &logins[0].otp).await;
    assert_eq!(unreserved(port).await, 0);
    login(&mut stream, &logins[1].otp).await;
    login(&mut stream, &logins[2].otp).await;
    assert_eq!(unreserved(port).await, 2);
    // A refusal — an OTP already used — and the stream reserves again
    // until a lookup is allowed.
    let Body::Rejection(used) = stream.submit(&logins[0].otp).await else {
        panic!("a used OTP scanned");
    };
    assert_eq!(tonic::Code::from_i32(used.code), tonic::Code::NotFound);
    login(&mut stream, &logins[3].otp).await;
    assert_eq!(unreserved(port).await, 2, "reserved after a refusal");
    // A copy gone stale (the login was cancelled): refused as ever, by the
    // reserved path.
    rp.cancel_transaction(CancelTransactionRequest {
        transaction_id: logins[4].transaction_id.clone(),
    })
    .await
    .unwrap();
    let Body::Rejection(cancelled) = stream.submit(&logins[4].otp).await else {
        panic!("a cancelled OTP scanned");
    };
    assert_eq!(tonic::Code::from_i32(cancelled.code), tonic::Code::NotFound);
    assert_eq!(unreserved(port).await, 2);
    let fresh = create(&mut rp).await;
    login(&mut stream, &fresh.otp).await;
    assert_eq!(unreserved(port).await, 2, "reserved after a refusal");
    let fresh = create(&mut rp).await;
    login(&mut stream, &fresh.otp).await;
    assert_eq!(unreserved(port).await, 3);
}

assent_tests::on_both_engines!(
    valid_otps_in_flight_take_no_strikes_and_wrong_ones_stay_bounded,
    only_a_stream_of_valid_otps_skips_the_reservation,
);
