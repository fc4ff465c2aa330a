//! What the agent tells a person: a revoked agent stops retrying, says why,
//! and `status` reports it (exit 1) until the device is enrolled again; an
//! OTP handed to a daemon that cannot reach its server fails within seconds
//! with the reason instead of waiting out its timeout.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use assent_proto::v1::RevokeDeviceRequest;
use assent_tests::agent::EnrolledAgent;
use assent_tests::{TestApp, TestDb, TestServer, binary, rp_client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_agent_stops_and_status_says_so() {
    let db = TestDb::sqlite();
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let agent = EnrolledAgent::enroll(&server, &app, "alice").await;
    let mut daemon = agent.run(&server.url(), &["--policy", "deny"]);
    agent.wait_connected().await;
    let mut rp = rp_client(&server, &app.api_key).await;
    rp.revoke_device(RevokeDeviceRequest {
        device_id: agent.device_id.clone(),
    })
    .await
    .unwrap();
    let exit = daemon
        .exited_within(Duration::from_secs(15))
        .await
        .expect("the revoked daemon stops instead of retrying");
    assert!(!exit.success(), "and exits non-zero: {exit:?}");

    let status = |json: bool| {
        let mut command = Command::new(binary("assent-agent"));
        command.arg("--state-dir").arg(&agent.state_dir);
        if json {
            command.arg("--json");
        }
        command.arg("status").output().unwrap()
    };
    let report = status(true);
    assert_eq!(report.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(report["revoked"], true);
    let text = status(false);
    let said = String::from_utf8_lossy(&text.stdout);
    assert!(said.contains("REVOKED"), "{said}");
    assert_eq!(
        said.matches("enroll it again").count(),
        1,
        "names the remedy once: {said}"
    );
    assert!(said.contains("assent-agent enroll --force"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_otp_fails_fast_with_the_reason_when_the_server_is_unreachable() {
    let db = TestDb::sqlite();
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let agent = EnrolledAgent::enroll(&server, &app, "alice").await;
    // Nothing listens on port 1.
    let _daemon = agent.run("http://127.0.0.1:1", &["--policy", "accept"]);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let otp = "A".repeat(64);
    let started = Instant::now();
    let output = Command::new(binary("assent-agent"))
        .arg("--state-dir")
        .arg(&agent.state_dir)
        .args(["otp", &otp, "--timeout", "60"])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(1));
    assert!(took < Duration::from_secs(10), "failed after {took:?}");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("cannot reach the server at http://127.0.0.1:1"),
        "{said}"
    );
    assert!(said.contains("status"), "names what to do: {said}");
    // Each cause once (tonic repeats "tcp connect error" one level up).
    assert!(
        said.matches("tcp connect error").count() <= 1,
        "no repeated cause: {said}"
    );
}
