//! The real agent daemon answering pushes: a cancellation kills the running
//! `exec:` policy command at once, and presence follows the process.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use assent_proto::v1::{
    CancelTransactionRequest, CreatePushAuthenticationRequest, GetDeviceRequest, TransactionState,
};
use assent_tests::{
    EnrolledAgent, RpClient, TestApp, TestDb, TestServer, rp_client, transaction, within,
};

fn is_running(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie would show state Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

async fn wait_for_file(path: &Path) -> String {
    within(20, "the policy command to start", async {
        loop {
            if let Ok(text) = std::fs::read_to_string(path)
                && text.ends_with('\n')
            {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

async fn cancelling_a_push_kills_the_agents_running_exec_policy(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let agent = EnrolledAgent::enroll(&server, &app, "alice").await;
    let pid_file = agent.work.join("policy.pid");
    // The policy command records its pid, then waits far longer than the test.
    let policy = format!("exec:echo $$ > {}; exec sleep 30", pid_file.display());
    let _daemon = agent.run(
        &server.url(),
        &["--exec-timeout", "60", "--policy", &policy],
    );
    agent.wait_connected().await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let created = rp
        .create_push_authentication(CreatePushAuthenticationRequest {
            user_id: "alice".to_owned(),
            message: "Log in to Example Shop?".to_owned(),
            ttl_seconds: 120,
            ..Default::default()
        })
        .await
        .expect("push")
        .into_inner();
    assert_eq!(created.devices_reached, 1);
    let pid: u32 = wait_for_file(&pid_file).await.trim().parse().expect("pid");
    assert!(
        is_running(pid),
        "the policy command runs while the push is open"
    );

    let cancelled_at = Instant::now();
    rp.cancel_transaction(CancelTransactionRequest {
        transaction_id: created.transaction_id.clone(),
    })
    .await
    .expect("cancel");
    within(5, "the policy command to be killed", async {
        while is_running(pid) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let killed_after = cancelled_at.elapsed();
    assert!(
        killed_after < Duration::from_secs(2),
        "killed only after {killed_after:?}"
    );
    let tx = transaction(&mut rp, &created.transaction_id).await;
    assert_eq!(tx.state(), TransactionState::Cancelled);
}

async fn is_connected(rp: &RpClient, device_id: &str) -> bool {
    rp.clone()
        .get_device(GetDeviceRequest {
            device_id: device_id.to_owned(),
        })
        .await
        .expect("get device")
        .into_inner()
        .device
        .expect("device")
        .connected
}

async fn presence_flips_when_the_agent_process_is_killed(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let agent = EnrolledAgent::enroll(&server, &app, "alice").await;
    let mut daemon = agent.run(&server.url(), &["--policy", "deny"]);
    let rp = rp_client(&server, &app.api_key).await;
    within(20, "the agent to show as connected", async {
        while !is_connected(&rp, &agent.device_id).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // SIGKILL: no goodbye from the agent; the kernel resets its socket.
    daemon.kill();
    within(60, "presence to flip after the crash", async {
        while is_connected(&rp, &agent.device_id).await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

assent_tests::on_both_engines!(
    cancelling_a_push_kills_the_agents_running_exec_policy,
    presence_flips_when_the_agent_process_is_killed,
);
