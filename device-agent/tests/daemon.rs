//! The daemon against a scripted in-process `DeviceService`: enrollment,
//! the signed handshake, OTP outcomes, reconnects and cancellations.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::Duration;

use assent_agent::{AgentConfig, AgentError, Policy};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use support::{Agent, DEVICE_ID, Fake, serve};

#[tokio::test]
async fn enroll_saves_a_private_profile_and_refuses_a_second_time() {
    let fake = Fake::default();
    let addr = serve(&fake).await;
    let dir = tempfile::tempdir().unwrap();
    let config = AgentConfig::new(
        dir.path().to_owned(),
        format!("http://{addr}"),
        Policy::Deny,
    );
    let bad = assent_agent::enroll(&config, "bad-code", "laptop", false).await;
    assert!(
        matches!(
            bad,
            Err(AgentError::EnrollmentRefused {
                code: tonic::Code::NotFound,
                ..
            })
        ),
        "{bad:?}"
    );
    assent_agent::enroll(&config, "good-code", "laptop", false)
        .await
        .unwrap();
    let profile = assent_agent::credentials::load_profile(dir.path())
        .unwrap()
        .unwrap();
    assert_eq!(profile.application_name, "Example Shop");
    let again = assent_agent::enroll(&config, "good-code", "laptop", false).await;
    assert!(matches!(again, Err(AgentError::AlreadyEnrolled { .. })));
}

#[tokio::test]
async fn an_accepted_login_is_reported_ok() {
    let fake = Fake::default();
    let agent = Agent::start(&fake, None, Policy::Accept).await;
    let (otp, id) = fake.new_otp();
    let outcome = agent.otp(&otp).await;
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(outcome.state.as_deref(), Some("ACCEPTED"));
    assert_eq!(outcome.transaction_id.as_deref(), Some(id.as_str()));
    let status = assent_agent::daemon_status(&agent.state(), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(status.connected);
    assert_eq!(status.policy, "accept");
    agent.stop().await;
}

#[tokio::test]
async fn the_deny_policy_denies_with_reason_policy() {
    let fake = Fake::default();
    let agent = Agent::start(&fake, None, Policy::Deny).await;
    let (otp, _) = fake.new_otp();
    let outcome = agent.otp(&otp).await;
    assert!(!outcome.ok);
    assert_eq!(outcome.state.as_deref(), Some("DENIED"));
    assert_eq!(outcome.reason.as_deref(), Some("policy"));
    agent.stop().await;
}

#[tokio::test]
async fn unknown_and_malformed_otps_are_errors() {
    let fake = Fake::default();
    let agent = Agent::start(&fake, None, Policy::Accept).await;
    let unknown = STANDARD.encode([1u8; 48]);
    let outcome = agent.otp(&unknown).await;
    assert!(outcome.error.unwrap().contains("invalid OTP"));
    let outcome = agent.otp("not-an-otp").await;
    assert_eq!(outcome.error.as_deref(), Some("invalid OTP (malformed)"));
    let (otp, _) = fake.new_otp();
    assert!(agent.otp(&otp).await.ok);
    let reused = agent.otp(&otp).await;
    assert!(!reused.ok && reused.error.unwrap().contains("invalid OTP"));
    agent.stop().await;
}

#[tokio::test]
async fn an_otp_waits_for_the_server_to_come_up() {
    let fake = Fake::default();
    let reserved = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let agent = Agent::start(&fake, Some(addr), Policy::Accept).await;
    let (otp, _) = fake.new_otp();
    let state = agent.state();
    let waiting = tokio::spawn(async move {
        assent_agent::submit_otp(&state, &otp, Duration::from_secs(30)).await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let status = assent_agent::daemon_status(&agent.state(), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(!status.connected);
    let stop = CancellationToken::new();
    tokio::spawn(
        fake.clone()
            .serve_on(TcpListener::bind(addr).await.unwrap(), stop.clone()),
    );
    let outcome = waiting.await.unwrap().unwrap();
    assert!(outcome.ok, "{outcome:?}");
    agent.stop().await;
}

#[tokio::test]
async fn a_scan_lost_in_a_reconnect_is_completed_once() {
    let fake = Fake::default().with(|world| world.drop_after_next_submit = true);
    let agent = Agent::start(&fake, None, Policy::Accept).await;
    let (otp, _) = fake.new_otp();
    let outcome = agent.otp(&otp).await;
    assert!(outcome.ok, "{outcome:?}");
    let (connects, decisions) = {
        let world = fake.0.lock().unwrap();
        (world.connects, world.decisions_received)
    };
    assert!(connects >= 2);
    assert_eq!(decisions, 1, "decided once despite the resubmission");
    agent.stop().await;
}

#[tokio::test]
async fn a_cancellation_stops_the_exec_policy_and_is_reported() {
    let fake = Fake::default().with(|world| world.cancel_after_confirmation = true);
    let agent = Agent::start(&fake, None, Policy::Exec("sleep 30".into())).await;
    let (otp, _) = fake.new_otp();
    let started = std::time::Instant::now();
    let outcome = agent.otp(&otp).await;
    assert_eq!(outcome.state.as_deref(), Some("CANCELLED"));
    assert_eq!(outcome.reason.as_deref(), Some("cancelled"));
    assert!(started.elapsed() < Duration::from_secs(5));
    agent.stop().await;
}

#[tokio::test]
async fn a_revoked_device_fails_waiting_callers() {
    let fake = Fake::default().with(|world| world.drop_after_next_submit = true);
    let agent = Agent::start(&fake, None, Policy::Accept).await;
    fake.0.lock().unwrap().revoked = true;
    // The stream drops after the OTP; the reconnect is refused.
    let (otp, _) = fake.new_otp();
    let outcome = agent.otp(&otp).await;
    let error = outcome.error.unwrap_or_default();
    assert!(error.contains("device revoked"), "{error}");
    agent.stop().await;
}

#[tokio::test]
async fn an_unacknowledged_decision_is_resent_without_deciding_again() {
    let fake = Fake::default().with(|world| world.drop_after_next_decision = true);
    let runs = tempfile::NamedTempFile::new().unwrap();
    let command = format!("echo run >> '{}'", runs.path().display());
    let agent = Agent::start(&fake, None, Policy::Exec(command)).await;
    let (otp, _) = fake.new_otp();
    let outcome = agent.otp(&otp).await;
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(
        fake.0.lock().unwrap().decisions_received,
        2,
        "sent, then re-sent"
    );
    let runs = std::fs::read_to_string(runs.path()).unwrap();
    assert_eq!(runs.lines().count(), 1, "the policy ran once");
    agent.stop().await;
}

#[tokio::test]
async fn a_second_daemon_on_the_same_state_dir_is_refused() {
    let fake = Fake::default();
    let agent = Agent::start(&fake, None, Policy::Accept).await;
    let config = AgentConfig::new(agent.state(), "http://127.0.0.1:9".into(), Policy::Accept);
    let second = assent_agent::run(config, CancellationToken::new()).await;
    assert!(
        matches!(second, Err(AgentError::AlreadyRunning { .. })),
        "{second:?}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_caller_that_times_out_while_disconnected_hears_unreachable() {
    let fake = Fake::default();
    let agent = Agent::start(&fake, Some("127.0.0.1:9".parse().unwrap()), Policy::Accept).await;
    let (otp, _) = fake.new_otp();
    let result = assent_agent::submit_otp(&agent.state(), &otp, Duration::from_millis(500)).await;
    assert!(
        matches!(result, Err(AgentError::ServerUnreachable { .. })),
        "{result:?}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn the_binary_hands_in_otps_and_stops_cleanly_on_sigterm() {
    let fake = Fake::default();
    let addr = serve(&fake).await;
    let dir = tempfile::tempdir().unwrap();
    let config = AgentConfig::new(
        dir.path().to_owned(),
        format!("http://{addr}"),
        Policy::Accept,
    );
    assent_agent::enroll(&config, "good-code", "laptop", false)
        .await
        .unwrap();
    let binary = env!("CARGO_BIN_EXE_assent-agent");
    // The server comes from the enrollment: no --server here.
    let mut daemon = tokio::process::Command::new(binary)
        .args(["run", "--policy", "accept"])
        .env("ASSENT_AGENT_DIR", dir.path())
        .env_remove("ASSENT_SERVER")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let socket = dir.path().join("agent.sock");
    while !socket.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (otp, _) = fake.new_otp();
    let output = tokio::process::Command::new(binary)
        .args(["otp", &otp])
        .env("ASSENT_AGENT_DIR", dir.path())
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "accepted: logged in to Example Shop"
    );
    let output = tokio::process::Command::new(binary)
        .args(["status", "--json"])
        .env("ASSENT_AGENT_DIR", dir.path())
        .output()
        .await
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["running"], true);
    assert_eq!(status["connected"], true);
    assert_eq!(status["device_id"], DEVICE_ID);

    let pid = daemon.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), daemon.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(!socket.exists());
}

#[tokio::test]
async fn a_go_away_is_followed_by_a_reconnect() {
    let fake = Fake::default().with(|world| world.go_away_once = true);
    let agent = Agent::start(&fake, None, Policy::Accept).await;
    let (otp, _) = fake.new_otp();
    let outcome = agent.otp(&otp).await;
    assert!(outcome.ok, "{outcome:?}");
    assert!(fake.0.lock().unwrap().connects >= 2);
    agent.stop().await;
}
