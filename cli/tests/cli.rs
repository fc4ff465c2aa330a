//! Black-box tests of the `assent` binary: argument handling, error wording,
//! exit codes and the JSON contract, against an in-process fake server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

#[allow(dead_code)] // shared by several test binaries, each using a part
mod fake_server;
#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use fake_server::{TX_ACCEPTED_ON_THIRD_POLL, TX_DENIED, TX_PENDING, TX_PUSH, TX_SCANNED};
use support::{assent, assent_at, json_stdout, stderr, stdout};

#[tokio::test]
async fn help_lists_every_subcommand() {
    let output = assent(&["--help"]).await;
    assert!(output.status.success());
    let help = stdout(&output);
    for command in ["enrollment", "login", "tx", "events", "devices"] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
}

#[tokio::test]
async fn a_mistyped_id_is_a_usage_error_before_anything_is_sent() {
    for args in [["tx", "get", "not-a-uuid"], ["tx", "wait", "12345"]] {
        let mut full = vec!["--api-key", "ak_unused", "--server", "http://127.0.0.1:1"];
        full.extend(args);
        let output = assent(&full).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let message = stderr(&output);
        assert_eq!(message.matches("is not an id").count(), 1, "{message}");
        assert!(!message.contains("cannot reach"), "{message}");
    }
}

#[tokio::test]
async fn missing_api_key_is_a_usage_error_with_the_hint() {
    let output = assent(&["tx", "get", TX_PENDING]).await;
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("--api-key") && message.contains("ASSENT_API_KEY"),
        "{message}"
    );
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn refused_connection_says_cannot_reach_the_server() {
    let args = [
        "--server",
        "http://127.0.0.1:1",
        "--api-key",
        "x",
        "--json",
        "tx",
        "get",
    ];
    let output = assent(&[&args[..], &["00000000-0000-0000-0000-000000000000"]].concat()).await;
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("cannot reach the Assent server at http://127.0.0.1:1"),
        "{message}"
    );
    assert!(message.contains("assent-server"), "{message}");
    assert!(
        output.stdout.is_empty(),
        "stdout must stay empty on failure"
    );
}

#[tokio::test]
async fn context_without_equals_sign_is_a_usage_error() {
    let output = assent(&["--api-key", "x", "login", "otp", "--context", "browser"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("key=value"));
}

#[tokio::test]
async fn wrong_api_key_is_reported_as_refused() {
    let server = fake_server::start(false).await;
    let output = assent(&[
        "--server",
        &server.url,
        "--api-key",
        "nope",
        "tx",
        "get",
        TX_PENDING,
    ])
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("the API key was refused: unknown API key"));
    assert!(stderr(&output).contains("ASSENT_API_KEY (or --api-key)"));
}

#[tokio::test]
async fn tx_get_json_prints_spec_state_and_nulls_for_empty_fields() {
    let server = fake_server::start(false).await;
    let output = assent_at(&server.url, &["tx", "get", TX_PENDING, "--json"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let value = json_stdout(&output);
    assert_eq!(value["transaction_id"], TX_PENDING);
    assert_eq!(value["state"], "PENDING");
    assert_eq!(value["kind"], "OTP");
    assert_eq!(value["number_matching"], false);
    assert_eq!(value["user_id"], Value::Null);
    assert_eq!(value["device_id"], Value::Null);
    assert_eq!(value["reason"], Value::Null);
    assert_eq!(value["expires_at"], "2023-11-14T22:15:20Z");
}

#[tokio::test]
async fn tx_get_json_tells_a_push_with_number_matching() {
    let server = fake_server::start(false).await;
    let output = assent_at(&server.url, &["--json", "tx", "get", TX_PUSH]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let value = json_stdout(&output);
    assert_eq!(value["kind"], "PUSH");
    assert_eq!(value["number_matching"], true);
    assert_eq!(value["user_id"], "alice");
    for key in ["message", "context", "created_at", "completed_at"] {
        assert!(value.get(key).is_some(), "{key} missing from {value}");
    }
    let text = stdout(&assent_at(&server.url, &["tx", "get", TX_PUSH]).await);
    assert!(text.contains("PUSH"), "{text}");
}

#[tokio::test]
async fn unknown_transaction_is_not_found() {
    let server = fake_server::start(false).await;
    let unknown = "00000000-0000-4000-8000-000000000000";
    let output = assent_at(&server.url, &["tx", "get", unknown]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains(&format!("not found: no transaction {unknown}")));
}

#[tokio::test]
async fn tx_wait_exits_zero_once_accepted() {
    let server = fake_server::start(false).await;
    let output = assent_at(
        &server.url,
        &["--json", "tx", "wait", TX_ACCEPTED_ON_THIRD_POLL],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let value = json_stdout(&output);
    assert_eq!(value["state"], "ACCEPTED");
    assert_eq!(value["user_id"], "alice");
    assert_eq!(value["device_id"], "d-1");
}

#[tokio::test]
async fn tx_wait_on_denied_prints_the_object_and_exits_one_with_the_reason() {
    let server = fake_server::start(false).await;
    let output = assent_at(&server.url, &["tx", "wait", TX_DENIED, "--json"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json_stdout(&output)["state"], "DENIED");
    assert!(stderr(&output).contains("transaction ended DENIED (not_me)"));
}

#[tokio::test]
async fn tx_wait_times_out_naming_the_current_state() {
    let server = fake_server::start(false).await;
    let started = Instant::now();
    let output = assent_at(
        &server.url,
        &["tx", "wait", TX_SCANNED, "--timeout", "1", "--json"],
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json_stdout(&output)["state"], "SCANNED");
    assert!(stderr(&output).contains("timed out after 1 s; transaction still SCANNED"));
}

#[tokio::test]
async fn tx_cancel_prints_the_cancelled_transaction() {
    let server = fake_server::start(false).await;
    let output = assent_at(&server.url, &["--json", "tx", "cancel", TX_PENDING]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json_stdout(&output)["state"], "CANCELLED");
}

#[tokio::test]
async fn login_otp_sends_message_and_context_and_prints_the_json_contract() {
    let server = fake_server::start(false).await;
    let args = [
        "login",
        "otp",
        "--user",
        "alice",
        "--context",
        "ip=10.0.0.1",
        "--context",
        "q=a=b",
        "--json",
    ];
    let output = assent_at(&server.url, &args).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let value = json_stdout(&output);
    assert_eq!(value["transaction_id"], TX_PENDING);
    assert_eq!(value["otp"], "b3RwLXNlY3JldA==");
    assert_eq!(value["expires_at"], "2023-11-14T22:15:20Z");
    let request = server.last_otp_request.lock().unwrap().clone().unwrap();
    assert_eq!(request.message, "Log in?");
    assert_eq!(request.user_id, "alice");
    assert_eq!(
        request.context.get("ip").map(String::as_str),
        Some("10.0.0.1")
    );
    assert_eq!(request.context.get("q").map(String::as_str), Some("a=b"));
}

#[tokio::test]
async fn login_otp_human_output_shows_the_otp_and_a_qr_code() {
    let server = fake_server::start(false).await;
    let output = assent_at(&server.url, &["login", "otp"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("b3RwLXNlY3JldA=="), "{text}");
    assert!(text.contains('\u{2588}'), "no QR code in:\n{text}");
    assert!(text.contains(&format!("assent tx wait {TX_PENDING}")));
}

#[tokio::test]
async fn enrollment_create_json_has_code_and_expiry() {
    let server = fake_server::start(false).await;
    let output = assent_at(
        &server.url,
        &["enrollment", "create", "--user", "alice", "--json"],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let value = json_stdout(&output);
    assert_eq!(value["code"], "enroll-code-123");
    assert_eq!(value["expires_at"], "2023-11-14T22:23:20Z");
    assert_eq!(value["user_id"], "alice");
    assert_eq!(value["application_name"], "Example Shop");
    // The QR payload names the server the CLI used, the code and the name.
    let qr = assent_proto::enrollment_qr::EnrollmentQr::parse(
        value["qr_payload"].as_str().expect("qr_payload"),
    )
    .expect("an enrollment payload");
    assert_eq!(qr.code, "enroll-code-123");
    assert_eq!(qr.server.as_deref(), Some(server.url.as_str()));
    assert_eq!(qr.application_name.as_deref(), Some("Example Shop"));
}

#[tokio::test]
async fn events_without_follow_prints_the_backlog_and_stops() {
    let server = fake_server::start(false).await;
    let started = Instant::now();
    let output = assent_at(&server.url, &["events", "--after", "1", "--json"]).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0],
        json!({
            "cursor": 2,
            "type": "transaction.created",
            "transaction_id": TX_PENDING,
            "user_id": null,
            "device_id": null,
            "reason": null,
            "occurred_at": "2023-11-14T22:13:22Z",
            "fraud_reported": false,
        })
    );
    assert_eq!(lines[1]["cursor"], 3);
    assert_eq!(lines[1]["type"], "transaction.denied");
    assert_eq!(lines[1]["reason"], "not_me");
    assert_eq!(lines[1]["fraud_reported"], true);
}

#[tokio::test]
async fn events_follow_ends_with_the_stream_and_gives_the_resume_cursor() {
    let server = fake_server::start(true).await;
    let output = assent_at(&server.url, &["events", "--follow", "--json"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).lines().count(), 3);
    assert!(stderr(&output).contains("--after 3"));
}

#[tokio::test]
async fn events_human_line_flags_a_fraud_report() {
    let server = fake_server::start(true).await;
    let output = assent_at(&server.url, &["events", "--after", "2"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("reason=not_me  FRAUD REPORTED"), "{text}");
}
