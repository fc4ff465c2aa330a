//! The device agent survives a server restart: it reconnects with backoff
//! and the outcome of an OTP handed in meanwhile still reaches the caller.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use assent_proto::v1::{CreateOtpAuthenticationRequest, TransactionState};
use assent_tests::{EnrolledAgent, TestApp, TestDb, TestServer, rp_client, transaction, within};

async fn agent_reconnects_after_a_server_restart_and_the_pending_otp_outcome_is_delivered(
    db: TestDb,
) {
    let mut server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let agent = EnrolledAgent::enroll(&server, &app, "alice").await;
    let _daemon = agent.run(&server.url(), &["--policy", "accept"]);
    agent.wait_connected().await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let created = rp
        .create_otp_authentication(CreateOtpAuthenticationRequest {
            message: "Log in to Example Shop?".to_owned(),
            ttl_seconds: 120,
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();

    // The server goes away; the OTP is handed in while it is down.
    server.stop().await;
    let pending = {
        let dir = agent.state_dir.clone();
        let otp = created.otp.clone();
        tokio::spawn(
            async move { assent_agent::submit_otp(&dir, &otp, Duration::from_secs(60)).await },
        )
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !pending.is_finished(),
        "the agent must wait for the server, not fail"
    );

    server.restart().await;
    let outcome = within(45, "the OTP outcome after the restart", pending)
        .await
        .expect("join")
        .expect("outcome");
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(outcome.state.as_deref(), Some("ACCEPTED"));

    let mut rp = rp_client(&server, &app.api_key).await;
    let tx = transaction(&mut rp, &created.transaction_id).await;
    assert_eq!(tx.state(), TransactionState::Accepted);
    assert_eq!(tx.user_id, "alice");
    assert_eq!(tx.device_id, agent.device_id);
}

assent_tests::on_both_engines!(
    agent_reconnects_after_a_server_restart_and_the_pending_otp_outcome_is_delivered,
);
