//! Signatures, tenant isolation and revocation.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use assent_proto::signing::SignedVerdict;
use assent_proto::v1::server_message::Body;
use assent_proto::v1::{
    CancelTransactionRequest, CreateOtpAuthenticationRequest, GetTransactionRequest,
    ListDevicesRequest, RevokeDeviceRequest, SubscribeRequest, TransactionState,
};
use assent_tests::{
    RpClient, TestApp, TestDb, TestDevice, TestServer, rp_client, transaction, within,
};
use tonic::Code;

async fn create(rp: &mut RpClient) -> assent_proto::v1::CreateOtpAuthenticationResponse {
    rp.create_otp_authentication(CreateOtpAuthenticationRequest {
        message: "Log in?".to_owned(),
        ttl_seconds: 60,
        ..Default::default()
    })
    .await
    .expect("create")
    .into_inner()
}

async fn state(rp: &mut RpClient, id: &str) -> TransactionState {
    transaction(rp, id).await.state()
}

async fn forged_decision_signature_is_refused_and_changes_nothing(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Shop").await;
    let device = TestDevice::enroll(&server, &app, "alice").await;
    let mut stream = device.connect(&server).await.expect("connect");
    let mut rp = rp_client(&server, &app.api_key).await;

    let created = create(&mut rp).await;
    let request = stream.scan(&created.otp).await;
    let mut forged = device.decision(&request, SignedVerdict::Accept, "");
    forged.signature[10] ^= 0x01;
    let Body::Rejection(rejection) = stream.decide(forged).await else {
        panic!("a forged signature must be rejected");
    };
    assert_eq!(Code::from_i32(rejection.code), Code::PermissionDenied);
    // A decision signed by another key (an attacker's) is refused too.
    let impostor = TestDevice::enroll(&server, &app, "mallory").await;
    let mut signed_by_other = impostor.decision(&request, SignedVerdict::Accept, "");
    signed_by_other.transaction_id = request.transaction_id.clone();
    let Body::Rejection(rejection) = stream.decide(signed_by_other).await else {
        panic!("another key's signature must be rejected");
    };
    assert_eq!(Code::from_i32(rejection.code), Code::PermissionDenied);
    // Flipping the verdict under an accept signature is refused.
    let mut flipped = device.decision(&request, SignedVerdict::Accept, "");
    flipped.decision = assent_proto::v1::Decision::Deny.into();
    let Body::Rejection(_) = stream.decide(flipped).await else {
        panic!("a signature over another verdict must be rejected");
    };
    assert_eq!(
        state(&mut rp, &created.transaction_id).await,
        TransactionState::Scanned
    );
}

async fn replayed_signature_from_another_transaction_is_refused(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Shop").await;
    let device = TestDevice::enroll(&server, &app, "alice").await;
    let mut stream = device.connect(&server).await.expect("connect");
    let mut rp = rp_client(&server, &app.api_key).await;

    let first = create(&mut rp).await;
    let first_request = stream.scan(&first.otp).await;
    let old = device.decision(&first_request, SignedVerdict::Accept, "");
    let Body::DecisionResult(result) = stream.decide(old.clone()).await else {
        panic!("first decision applies");
    };
    assert!(result.applied);

    let second = create(&mut rp).await;
    stream.scan(&second.otp).await;
    let mut replayed = old.clone();
    replayed.transaction_id = second.transaction_id.clone();
    let Body::Rejection(rejection) = stream.decide(replayed).await else {
        panic!("a signature from another transaction must be rejected");
    };
    assert_eq!(Code::from_i32(rejection.code), Code::PermissionDenied);
    assert_eq!(
        state(&mut rp, &second.transaction_id).await,
        TransactionState::Scanned
    );

    // Re-sending the original decision changes nothing and says so.
    let Body::DecisionResult(again) = stream.decide(old).await else {
        panic!("a re-sent decision reports the outcome");
    };
    assert!(!again.applied);
    assert_eq!(again.state(), TransactionState::Accepted);
}

async fn tenant_b_can_neither_get_cancel_nor_see_events_of_tenant_a(db: TestDb) {
    let server = TestServer::start(&db).await;
    let shop_a = TestApp::create(&db, "Shop A").await;
    let shop_b = TestApp::create(&db, "Shop B").await;
    let device_a = TestDevice::enroll(&server, &shop_a, "alice").await;
    let device_b = TestDevice::enroll(&server, &shop_b, "bob").await;
    let mut rp_a = rp_client(&server, &shop_a.api_key).await;
    let mut rp_b = rp_client(&server, &shop_b.api_key).await;
    let mut events_b = rp_b
        .subscribe(SubscribeRequest {
            after_cursor: 0,
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();

    let created = create(&mut rp_a).await;
    let get = rp_b
        .get_transaction(GetTransactionRequest {
            transaction_id: created.transaction_id.clone(),
        })
        .await
        .expect_err("B must not read A's transaction");
    assert_eq!(get.code(), Code::NotFound);
    assert!(!get.message().contains(&created.transaction_id));
    let cancel = rp_b
        .cancel_transaction(CancelTransactionRequest {
            transaction_id: created.transaction_id.clone(),
        })
        .await
        .expect_err("B must not cancel A's transaction");
    assert_eq!(cancel.code(), Code::NotFound);
    // B's device cannot answer A's OTP either.
    let mut stream_b = device_b.connect(&server).await.expect("connect");
    let Body::Rejection(_) = stream_b.submit(&created.otp).await else {
        panic!("a device of B must not scan A's OTP");
    };
    let revoke = rp_b
        .revoke_device(RevokeDeviceRequest {
            device_id: device_a.device_id.clone(),
        })
        .await
        .expect_err("B must not revoke A's device");
    assert_eq!(revoke.code(), Code::NotFound);
    let listed = rp_b
        .list_devices(ListDevicesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .devices;
    assert!(listed.iter().all(|d| d.device_id != device_a.device_id));
    assert_eq!(
        state(&mut rp_a, &created.transaction_id).await,
        TransactionState::Pending
    );

    // B's stream carries only B's own events (its device enrollment, then a
    // marker transaction); A's transaction never appears.
    let marker = create(&mut rp_b).await;
    within(10, "B's own marker event", async {
        loop {
            let event = events_b.message().await.expect("stream").expect("open");
            assert_ne!(
                event.transaction_id, created.transaction_id,
                "A's event leaked to B"
            );
            assert_ne!(
                event.device_id, device_a.device_id,
                "A's device leaked to B"
            );
            if event.transaction_id == marker.transaction_id {
                break;
            }
        }
    })
    .await;
}

async fn revoked_device_stream_is_closed_its_confirmation_fails_and_it_cannot_reconnect(
    db: TestDb,
) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Shop").await;
    let device = TestDevice::enroll(&server, &app, "alice").await;
    let mut stream = device.connect(&server).await.expect("connect");
    let mut rp = rp_client(&server, &app.api_key).await;

    let created = create(&mut rp).await;
    stream.scan(&created.otp).await;
    let revoked = rp
        .revoke_device(RevokeDeviceRequest {
            device_id: device.device_id.clone(),
        })
        .await
        .expect("revoke")
        .into_inner()
        .device
        .expect("device");
    assert!(revoked.revoked);
    // First the open confirmation is withdrawn, then the stream is closed.
    let Ok(Some(Body::Cancellation(cancellation))) = stream.next().await else {
        panic!("the open confirmation must be withdrawn");
    };
    assert_eq!(cancellation.transaction_id, created.transaction_id);
    assert_eq!(cancellation.reason, "device_revoked");
    let closed = stream.next().await;
    let status = closed.expect_err("the stream must end with an error status");
    assert_eq!(status.code(), Code::PermissionDenied);

    let tx = transaction(&mut rp, &created.transaction_id).await;
    assert_eq!(tx.state(), TransactionState::Failed);
    assert_eq!(tx.reason, "device_revoked");

    let refused = device
        .connect(&server)
        .await
        .err()
        .expect("a revoked device cannot connect");
    assert_eq!(refused.code(), Code::PermissionDenied);
}

async fn sql_wildcards_and_quotes_in_text_fields_are_opaque(db: TestDb) {
    use assent_proto::v1::{CreateOtpAuthenticationRequest, ListDevicesRequest};
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let users = ["a", "a%", "a_", "%", "a'--", "a\"\\", "a' OR '1'='1"];
    for user in users {
        TestDevice::enroll(&server, &app, user).await;
    }
    for user in users {
        let devices = rp
            .list_devices(ListDevicesRequest {
                user_id: user.to_owned(),
            })
            .await
            .expect("list")
            .into_inner()
            .devices;
        assert_eq!(devices.len(), 1, "{user:?} matched {devices:?}");
        assert_eq!(devices[0].user_id, user);
    }
    let message = "Log in? '; DROP TABLE transactions; -- %_\\";
    let created = rp
        .create_otp_authentication(CreateOtpAuthenticationRequest {
            message: message.to_owned(),
            context: [("note".to_owned(), "100% 'sure'".to_owned())].into(),
            user_id: "a%".to_owned(),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();
    let stored = transaction(&mut rp, &created.transaction_id).await;
    assert_eq!(stored.message, message);
    assert_eq!(stored.context["note"], "100% 'sure'");
    assert_eq!(stored.user_id, "a%");
}

assent_tests::on_both_engines!(
    sql_wildcards_and_quotes_in_text_fields_are_opaque,
    forged_decision_signature_is_refused_and_changes_nothing,
    replayed_signature_from_another_transaction_is_refused,
    tenant_b_can_neither_get_cancel_nor_see_events_of_tenant_a,
    revoked_device_stream_is_closed_its_confirmation_fails_and_it_cannot_reconnect,
);
