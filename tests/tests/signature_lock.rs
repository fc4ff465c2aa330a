//! Catalogue #15, repeated failures: five decision signatures of one device
//! that fail to verify lock that device out of deciding (one more attempt a
//! minute, `SIGNATURE_ATTEMPTS_EXHAUSTED`), while other devices decide. A
//! decision comes on the device's authenticated stream, so only the key's
//! holder can spend its allowance. Failed hellos lock nothing: a device id
//! is public, and behind a proxy one address is everyone's, so any lock
//! there would let anyone lock devices out. Both engines.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use assent_proto::signing::SignedVerdict;
use assent_proto::v1::server_message::Body;
use assent_proto::v1::{CreateOtpAuthenticationRequest, TransactionState};
use assent_tests::{TestApp, TestDb, TestDevice, TestServer, rp_client, transaction};
use ed25519_dalek::SigningKey;
use tonic::Code;

async fn case_15_five_bad_decision_signatures_lock_the_device_out_of_deciding(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let phone = TestDevice::enroll(&server, &app, "alice").await;
    let tablet = TestDevice::enroll(&server, &app, "bob").await;
    let otp = |rp: &mut assent_tests::RpClient| {
        let mut rp = rp.clone();
        async move {
            rp.create_otp_authentication(CreateOtpAuthenticationRequest {
                message: "Log in?".to_owned(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    let created = otp(&mut rp).await;
    let mut stream = phone.connect(&server).await.expect("connect");
    let request = stream.scan(&created.otp).await;
    let good = phone.decision(&request, SignedVerdict::Accept, "");
    let forger = TestDevice {
        key: SigningKey::from_bytes(&[77; 32]),
        device_id: phone.device_id.clone(),
        user_id: phone.user_id.clone(),
        application_id: phone.application_id.clone(),
    };
    let forged = forger.decision(&request, SignedVerdict::Accept, "");
    for attempt in 0..5 {
        match stream.decide(forged.clone()).await {
            Body::Rejection(rejection) => {
                assert_eq!(
                    rejection.code,
                    Code::PermissionDenied as i32,
                    "attempt {attempt}: {rejection:?}"
                );
            }
            other => panic!("attempt {attempt}: expected a rejection, got {other:?}"),
        }
    }
    // Locked: even the right signature waits now.
    match stream.decide(good).await {
        Body::Rejection(rejection) => {
            assert_eq!(
                rejection.code,
                Code::ResourceExhausted as i32,
                "{rejection:?}"
            );
            assert!(rejection.message.contains("retry in"), "{rejection:?}");
        }
        other => panic!("expected the lock, got {other:?}"),
    }
    let tx = transaction(&mut rp, &created.transaction_id).await;
    assert_eq!(tx.state(), TransactionState::Scanned);
    // Another device is not affected.
    let other = otp(&mut rp).await;
    let mut tablet_stream = tablet.connect(&server).await.expect("connect");
    let asked = tablet_stream.scan(&other.otp).await;
    match tablet_stream
        .decide(tablet.decision(&asked, SignedVerdict::Accept, ""))
        .await
    {
        Body::DecisionResult(result) => assert!(result.applied),
        other => panic!("expected the tablet's decision applied, got {other:?}"),
    }
}

async fn case_15_failed_hellos_lock_nothing_so_nobody_locks_a_device_out_by_naming_it(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Shop").await;
    let phone = TestDevice::enroll(&server, &app, "alice").await;
    let impostor = TestDevice {
        key: SigningKey::from_bytes(&[78; 32]),
        device_id: phone.device_id.clone(),
        user_id: phone.user_id.clone(),
        application_id: phone.application_id.clone(),
    };
    for attempt in 0..12 {
        let refused = impostor
            .connect(&server)
            .await
            .err()
            .expect("a forged hello");
        assert_eq!(refused.code(), Code::Unauthenticated, "attempt {attempt}");
    }
    phone
        .connect(&server)
        .await
        .expect("the genuine device still connects");
}

assent_tests::on_both_engines!(
    case_15_five_bad_decision_signatures_lock_the_device_out_of_deciding,
    case_15_failed_hellos_lock_nothing_so_nobody_locks_a_device_out_by_naming_it,
);
