//! Several servers on one PostgreSQL: what one replica does reaches devices
//! and subscribers connected to another (LISTEN/NOTIFY between replicas).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use assent_proto::signing::SignedVerdict;
use assent_proto::v1::server_message::Body;
use assent_proto::v1::{
    CancelTransactionRequest, CreatePushAuthenticationRequest, RevokeDeviceRequest,
    SubscribeRequest, TransactionState,
};
use assent_tests::{TestApp, TestDb, TestDevice, TestServer, rp_client, within};
use tonic::Code;

fn push_to(user: &str) -> CreatePushAuthenticationRequest {
    CreatePushAuthenticationRequest {
        user_id: user.to_owned(),
        message: "Log in to Example Shop?".to_owned(),
        ttl_seconds: 60,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_created_on_one_replica_reaches_a_device_on_another_and_back() {
    let db = TestDb::create().await;
    let replica_a = TestServer::start(&db).await;
    let replica_b = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let device = TestDevice::enroll(&replica_a, &app, "alice").await;
    let mut stream = device.connect(&replica_a).await.expect("connect to A");
    let mut rp_b = rp_client(&replica_b, &app.api_key).await;
    let mut events_b = rp_b
        .subscribe(SubscribeRequest {
            after_cursor: 0,
            ..Default::default()
        })
        .await
        .expect("subscribe on B")
        .into_inner();

    let created = rp_b
        .create_push_authentication(push_to("alice"))
        .await
        .expect("push on B")
        .into_inner();
    assert_eq!(
        created.devices_reached, 0,
        "B holds no stream of the device"
    );
    let Some(Body::ConfirmationRequest(request)) = stream.next().await.expect("stream") else {
        panic!("the device on A must receive the push created on B");
    };
    assert_eq!(request.transaction_id, created.transaction_id);
    let Body::DecisionResult(result) = stream
        .decide(device.decision(&request, SignedVerdict::Accept, ""))
        .await
    else {
        panic!("expected a decision result");
    };
    assert_eq!(result.state(), TransactionState::Accepted);
    within(
        10,
        "B's subscriber to see the outcome decided on A",
        async {
            loop {
                let event = events_b.message().await.expect("stream").expect("open");
                if event.transaction_id == created.transaction_id
                    && event.r#type == "transaction.accepted"
                {
                    return;
                }
            }
        },
    )
    .await;

    // A cancellation on B reaches the device on A.
    let second = rp_b
        .create_push_authentication(push_to("alice"))
        .await
        .expect("push on B")
        .into_inner();
    let Some(Body::ConfirmationRequest(_)) = stream.next().await.expect("stream") else {
        panic!("the second push must arrive too");
    };
    rp_b.cancel_transaction(CancelTransactionRequest {
        transaction_id: second.transaction_id.clone(),
    })
    .await
    .expect("cancel on B");
    let Some(Body::Cancellation(cancellation)) = stream.next().await.expect("stream") else {
        panic!("the cancellation on B must reach the device on A");
    };
    assert_eq!(cancellation.transaction_id, second.transaction_id);

    // Revoking on B closes the stream on A.
    rp_b.revoke_device(RevokeDeviceRequest {
        device_id: device.device_id.clone(),
    })
    .await
    .expect("revoke on B");
    let status = within(10, "the stream on A to close", async {
        loop {
            match stream.next().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream must end with an error status"),
                Err(status) => return status,
            }
        }
    })
    .await;
    assert_eq!(status.code(), Code::PermissionDenied);
}
