//! The device agent survives a server restart: it reconnects with backoff
//! and the outcome of an OTP handed in meanwhile still reaches the caller.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use assent_proto::v1::{
    CreateEnrollmentRequest, CreateOtpAuthenticationRequest, GetTransactionRequest,
    TransactionState,
};
use assent_tests::{TestApp, TestDb, TestServer, binary, rp_client, within};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn state_dir() -> PathBuf {
    // Short: Unix socket paths are limited to about 100 bytes.
    let dir = std::env::temp_dir().join(format!(
        "assent-rc-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("agent")
}

async fn wait_connected(dir: &std::path::Path) {
    within(20, "the agent to connect", async {
        loop {
            let status = assent_agent::daemon_status(dir, Duration::from_secs(2)).await;
            if status.is_ok_and(|s| s.connected) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

async fn agent_reconnects_after_a_server_restart_and_the_pending_otp_outcome_is_delivered(
    db: TestDb,
) {
    let mut server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let code = rp
        .create_enrollment(CreateEnrollmentRequest {
            user_id: "alice".to_owned(),
            ttl_seconds: 0,
        })
        .await
        .expect("enrollment")
        .into_inner()
        .code;
    let dir = state_dir();
    let config = assent_agent::AgentConfig::new(
        dir.clone(),
        server.url(),
        "accept".parse().expect("policy"),
    );
    assent_agent::enroll(&config, &code, "Kiosk 7", false)
        .await
        .expect("enroll");
    let _daemon = Daemon(
        Command::new(binary("assent-agent"))
            .args(["--state-dir"])
            .arg(&dir)
            .args(["--server", &server.url(), "run", "--policy", "accept"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the agent"),
    );
    wait_connected(&dir).await;

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
        let dir = dir.clone();
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
    let tx = rp
        .get_transaction(GetTransactionRequest {
            transaction_id: created.transaction_id,
        })
        .await
        .expect("get")
        .into_inner()
        .transaction
        .expect("transaction");
    assert_eq!(tx.state(), TransactionState::Accepted);
    assert_eq!(tx.user_id, "alice");
}

assent_tests::on_both_engines!(
    agent_reconnects_after_a_server_restart_and_the_pending_otp_outcome_is_delivered,
);
