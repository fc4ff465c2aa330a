//! Revocation takes effect at once, even against a device that holds many
//! confirmations and has stopped reading its stream.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use assent_proto::signing::SignedVerdict;
use assent_proto::v1::server_message::Body;
use assent_proto::v1::{
    CancelTransactionRequest, CreateOtpAuthenticationRequest, CreatePushAuthenticationRequest,
    GetDeviceRequest, RevokeDeviceRequest, TransactionState, agent_message,
};
use assent_tests::{
    TcpTap, TestApp, TestDb, TestDevice, TestServer, rp_client, transaction, within,
};

/// Confirmations the device holds when it stops reading.
const HELD: usize = 500;
/// Transactions cancelled after it stopped reading, to fill its window.
const CANCELLED: usize = 150;

async fn a_revoked_device_that_stopped_reading_is_disconnected_within_a_second(db: TestDb) {
    let server = TestServer::start_with(&db, |config| config.create_burst = 10_000).await;
    let app = TestApp::create(&db, "Shop").await;
    let device = TestDevice::enroll(&server, &app, "alice").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    // A client whose receive windows are small, so that not reading fills
    // them quickly, as a device that stopped reading would; it connects
    // through a tap that would see the server close the connection.
    let tap = TcpTap::start(server.addr).await;
    let channel = tap.slow_reader_channel(4096).await;
    let mut stream = device.connect_on(channel).await.expect("connect");

    let push = rp
        .create_push_authentication(CreatePushAuthenticationRequest {
            user_id: "alice".to_owned(),
            message: "Log in?".to_owned(),
            ttl_seconds: 120,
            ..Default::default()
        })
        .await
        .expect("push")
        .into_inner();
    let Ok(Some(Body::ConfirmationRequest(held_push))) = stream.next().await else {
        panic!("the push reaches the connected device");
    };
    let mut scanned = Vec::with_capacity(HELD);
    for _ in 0..HELD {
        let created = rp
            .create_otp_authentication(CreateOtpAuthenticationRequest {
                message: "Log in at the kiosk?".to_owned(),
                ttl_seconds: 120,
                ..Default::default()
            })
            .await
            .expect("create")
            .into_inner();
        stream.scan(&created.otp).await;
        scanned.push(created.transaction_id);
    }

    // The device stops reading; withdrawals pile up until its window and
    // the server's queues are full.
    for id in scanned.iter().take(CANCELLED) {
        rp.cancel_transaction(CancelTransactionRequest {
            transaction_id: id.clone(),
        })
        .await
        .expect("cancel");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let revoked_at = Instant::now();
    rp.revoke_device(RevokeDeviceRequest {
        device_id: device.device_id.clone(),
    })
    .await
    .expect("revoke");
    // The device tries to accept the push it holds, right after.
    let accept = device.decision(&held_push, SignedVerdict::Accept, "");
    let _ = tokio::time::timeout(
        Duration::from_millis(200),
        stream.offer(agent_message::Body::Decision(accept)),
    )
    .await;

    within(2, "the device to be shown disconnected", async {
        loop {
            let shown = rp
                .get_device(GetDeviceRequest {
                    device_id: device.device_id.clone(),
                })
                .await
                .expect("get device")
                .into_inner()
                .device
                .expect("device");
            assert!(shown.revoked);
            if !shown.connected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let disconnected_after = revoked_at.elapsed();
    assert!(
        disconnected_after < Duration::from_secs(1),
        "disconnected only after {disconnected_after:?}"
    );
    // The server let go of the stream although the device never read on:
    // it reset that stream, within a second of the revocation, and kept the
    // connection (other streams may share it).
    let status = within(2, "the stalled stream's end", async {
        loop {
            match stream.next().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the stalled stream ends with an error"),
                Err(status) => return status,
            }
        }
    })
    .await;
    assert_ne!(status.code(), tonic::Code::Ok);
    assert!(
        tap.server_closes().is_empty(),
        "the server reset the stream, not the connection"
    );
    drop(stream);

    let push_now = transaction(&mut rp, &push.transaction_id).await;
    assert_eq!(
        push_now.state(),
        TransactionState::Pending,
        "the revoked device's accept must not apply"
    );
    for id in scanned.iter().skip(CANCELLED).take(5) {
        let failed = transaction(&mut rp, id).await;
        assert_eq!(failed.state(), TransactionState::Failed);
        assert_eq!(failed.reason, "device_revoked");
    }
    let refused = device.connect(&server).await.err().expect("no reconnect");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
}

assent_tests::on_both_engines!(
    a_revoked_device_that_stopped_reading_is_disconnected_within_a_second
);
