//! The real agent daemon answering pushes: a cancellation kills the running
//! `exec:` policy command at once.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use assent_proto::v1::{
    CancelTransactionRequest, CreateEnrollmentRequest, CreatePushAuthenticationRequest,
    GetDeviceRequest, GetTransactionRequest, TransactionState,
};
use assent_tests::{RpClient, TestApp, TestDb, TestServer, binary, rp_client, within};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn short_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "assent-ap-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

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
    let work = short_dir();
    let state_dir = work.join("agent");
    let pid_file = work.join("policy.pid");
    let config = assent_agent::AgentConfig::new(
        state_dir.clone(),
        server.url(),
        "deny".parse().expect("policy"),
    );
    assent_agent::enroll(&config, &code, "Kiosk 7", false)
        .await
        .expect("enroll");
    // The policy command records its pid, then waits far longer than the test.
    let policy = format!("exec:echo $$ > {}; exec sleep 30", pid_file.display());
    let _daemon = Daemon(
        Command::new(binary("assent-agent"))
            .arg("--state-dir")
            .arg(&state_dir)
            .args([
                "--server",
                &server.url(),
                "run",
                "--exec-timeout",
                "60",
                "--policy",
                &policy,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the agent"),
    );
    within(20, "the agent to connect", async {
        loop {
            let status = assent_agent::daemon_status(&state_dir, Duration::from_secs(2)).await;
            if status.is_ok_and(|s| s.connected) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

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

    let tx = rp
        .get_transaction(GetTransactionRequest {
            transaction_id: created.transaction_id,
        })
        .await
        .expect("get")
        .into_inner()
        .transaction
        .expect("transaction");
    assert_eq!(tx.state(), TransactionState::Cancelled);
    let _ = std::fs::remove_dir_all(work);
}

async fn presence_flips_when_the_agent_process_is_killed(db: TestDb) {
    let server = TestServer::start(&db).await;
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
    let work = short_dir();
    let state_dir = work.join("agent");
    let config = assent_agent::AgentConfig::new(
        state_dir.clone(),
        server.url(),
        "deny".parse().expect("policy"),
    );
    let enrolled = assent_agent::enroll(&config, &code, "Kiosk 7", false)
        .await
        .expect("enroll");
    let mut daemon = Daemon(
        Command::new(binary("assent-agent"))
            .arg("--state-dir")
            .arg(&state_dir)
            .args(["--server", &server.url(), "run", "--policy", "deny"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the agent"),
    );
    let connected = |rp: &RpClient| {
        let mut rp = rp.clone();
        let id = enrolled.device_id.clone();
        async move {
            rp.get_device(GetDeviceRequest { device_id: id })
                .await
                .expect("get device")
                .into_inner()
                .device
                .expect("device")
                .connected
        }
    };
    within(20, "the agent to show as connected", async {
        while !connected(&rp).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // SIGKILL: no goodbye from the agent; the kernel resets its socket.
    daemon.0.kill().expect("kill");
    let _ = daemon.0.wait();
    within(60, "presence to flip after the crash", async {
        while connected(&rp).await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let _ = std::fs::remove_dir_all(work);
}

assent_tests::on_both_engines!(
    cancelling_a_push_kills_the_agents_running_exec_policy,
    presence_flips_when_the_agent_process_is_killed,
);
