//! Black-box checks of the `assent-agent` binary that need no server.

// Helpers outside `#[test]` functions may panic too: that is a test failure.
#![allow(clippy::expect_used)]

use std::process::{Command, Output};

fn agent(state_dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_assent-agent"))
        .args(args)
        .env("ASSENT_AGENT_DIR", state_dir)
        .env_remove("ASSENT_SERVER")
        .env_remove("ASSENT_AGENT_POLICY")
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_lists_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let output = agent(dir.path(), &["--help"]);
    assert!(output.status.success());
    let help = text(&output.stdout);
    for command in ["enroll", "run", "otp", "status"] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
}

#[test]
fn otp_without_a_daemon_says_it_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let output = agent(dir.path(), &["otp", "AAAA"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("the agent daemon is not running"),
        "{stderr}"
    );
    // It names where it looked, once.
    let socket = dir.path().join("agent.sock");
    assert_eq!(
        stderr.matches(&socket.display().to_string()).count(),
        1,
        "{stderr}"
    );
}

#[test]
fn otp_json_without_a_daemon_prints_the_outcome_object() {
    let dir = tempfile::tempdir().unwrap();
    let output = agent(dir.path(), &["otp", "AAAA", "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let outcome: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(outcome["ok"], false);
    assert!(outcome["state"].is_null());
    assert!(outcome["error"].as_str().unwrap().contains("not running"));
}

#[test]
fn run_without_enrollment_fails_with_not_enrolled() {
    let dir = tempfile::tempdir().unwrap();
    let output = agent(dir.path(), &["run", "--policy", "deny"]);
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("not enrolled"), "{stderr}");
    assert!(!dir.path().join("agent.sock").exists());
}

#[test]
fn status_without_enrollment_reports_nothing_running() {
    let dir = tempfile::tempdir().unwrap();
    let output = agent(dir.path(), &["status", "--json"]);
    assert!(output.status.success());
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["enrolled"], false);
    assert_eq!(status["running"], false);
    assert_eq!(status["connected"], false);
}

#[test]
fn an_unknown_policy_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = agent(dir.path(), &["run", "--policy", "maybe"]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("invalid policy"));
}

#[test]
fn an_enrollment_code_starting_with_a_dash_is_not_taken_for_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    let output = agent(
        dir.path(),
        &[
            "enroll",
            "--server",
            "http://127.0.0.1:9",
            "--code",
            "-yZVHW9CTS2DcHJ",
            "--name",
            "k",
        ],
    );
    assert!(
        !text(&output.stderr).contains("unexpected argument"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn an_otp_starting_with_a_dash_is_not_taken_for_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    let output = agent(dir.path(), &["otp", "-AAAA_bbbb"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("the agent daemon is not running"));
}
