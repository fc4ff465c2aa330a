//! Several servers for the agent: with `--server A,B` it connects to one,
//! and when that one drains it reconnects to the other and keeps answering.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use assent_proto::v1::{CreatePushAuthenticationRequest, TransactionState, WaitTransactionRequest};
use assent_tests::agent::EnrolledAgent;
use assent_tests::metrics::{metric, server_with_metrics};
use assent_tests::{TestApp, TestDb, rp_client, within};

/// Device streams this server holds itself (its metrics gauge).
async fn streams_held(metrics_port: u16) -> u64 {
    let held = metric(metrics_port, "assent_device_streams").await;
    held.map_or(0, |value| value as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_moves_to_another_server_when_its_server_drains() {
    let db = TestDb::create().await;
    let (mut first, first_metrics) = server_with_metrics(&db).await;
    let (mut second, second_metrics) = server_with_metrics(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let agent = EnrolledAgent::enroll(&first, &app, "alice").await;
    let servers = format!("{},{}", first.url(), second.url());
    let _daemon = agent.run(&servers, &["--policy", "accept"]);
    agent.wait_connected().await;

    // Drain whichever holds the stream; the other must take over.
    let on_first = streams_held(first_metrics).await == 1;
    assert_eq!(
        streams_held(first_metrics).await + streams_held(second_metrics).await,
        1
    );
    let (holder, other, other_metrics) = if on_first {
        (&mut first, &mut second, second_metrics)
    } else {
        (&mut second, &mut first, first_metrics)
    };
    holder.stop().await;
    within(20, "the agent to reconnect to the other server", async {
        while streams_held(other_metrics).await != 1 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let mut rp = rp_client(other, &app.api_key).await;
    let push = rp
        .create_push_authentication(CreatePushAuthenticationRequest {
            user_id: "alice".to_owned(),
            message: "Log in?".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let outcome = rp
        .wait_transaction(WaitTransactionRequest {
            transaction_id: push.transaction_id,
            timeout_ms: 15_000,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        outcome.transaction.unwrap().state(),
        TransactionState::Accepted
    );
}
