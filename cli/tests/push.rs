//! Black-box tests of `assent login push`: the request it sends, its JSON
//! contract with and without number matching, its text, and its errors.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

#[allow(dead_code)] // shared by several test binaries, each using a part
mod fake_server;
#[allow(dead_code)]
mod support;

use serde_json::json;

use fake_server::{PUSH_NUMBER, TX_PUSH, USER_WITH_OPEN_PUSH, USER_WITHOUT_DEVICE};
use support::{assent, assent_at, json_stdout, stderr, stdout};

#[tokio::test]
async fn push_with_number_matching_sends_the_flags_and_prints_the_number() {
    let server = fake_server::start(false).await;
    let args = [
        "login",
        "push",
        "--user",
        "alice",
        "--number-matching",
        "--ttl",
        "30",
        "--context",
        "ip=10.0.0.1",
        "--json",
    ];
    let output = assent_at(&server.url, &args).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        json_stdout(&output),
        json!({
            "transaction_id": TX_PUSH,
            "expires_at": "2023-11-14T22:15:20Z",
            "number": PUSH_NUMBER,
            "devices_reached": 1,
        })
    );
    let request = server.last_push_request.lock().unwrap().clone().unwrap();
    assert_eq!(request.user_id, "alice");
    assert_eq!(request.message, "Log in?");
    assert_eq!(request.ttl_seconds, 30);
    assert!(request.number_matching);
    assert_eq!(
        request.context.get("ip").map(String::as_str),
        Some("10.0.0.1")
    );
}

#[tokio::test]
async fn push_without_number_matching_has_a_null_number_and_server_defaults() {
    let server = fake_server::start(false).await;
    let args = [
        "--json",
        "login",
        "push",
        "--user",
        "bob",
        "--message",
        "Sign in to Example?",
    ];
    let output = assent_at(&server.url, &args).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        json_stdout(&output),
        json!({
            "transaction_id": TX_PUSH,
            "expires_at": "2023-11-14T22:15:20Z",
            "number": null,
            "devices_reached": 0,
        })
    );
    let request = server.last_push_request.lock().unwrap().clone().unwrap();
    assert_eq!(request.message, "Sign in to Example?");
    assert_eq!(request.ttl_seconds, 0);
    assert!(!request.number_matching);
    assert!(request.context.is_empty());
}

#[tokio::test]
async fn push_human_output_shows_the_number_and_the_devices_reached() {
    let server = fake_server::start(false).await;
    let args = ["login", "push", "--user", "alice", "--number-matching"];
    let output = assent_at(&server.url, &args).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains(TX_PUSH), "{text}");
    assert!(text.contains("2023-11-14T22:15:20Z"), "{text}");
    assert!(text.contains("1 connected now"), "{text}");
    assert!(
        text.contains("Show this number on the login page: 42"),
        "{text}"
    );
    assert!(
        text.contains(&format!("assent tx wait {TX_PUSH}")),
        "{text}"
    );
}

#[tokio::test]
async fn push_human_output_says_unconnected_devices_get_it_later() {
    let server = fake_server::start(false).await;
    let output = assent_at(&server.url, &["login", "push", "--user", "bob"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("0 connected now; devices get it when they connect"),
        "{text}"
    );
    assert!(!text.contains("Show this number"), "{text}");
}

#[tokio::test]
async fn push_to_a_user_without_device_prints_the_server_message_and_exits_one() {
    let server = fake_server::start(false).await;
    let args = ["login", "push", "--user", USER_WITHOUT_DEVICE, "--json"];
    let output = assent_at(&server.url, &args).await;
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("FAILED_PRECONDITION: user nobody has no device"),
        "{message}"
    );
    assert!(
        output.stdout.is_empty(),
        "stdout must stay empty on failure"
    );
}

#[tokio::test]
async fn push_while_one_is_open_is_rate_limited_with_the_server_message() {
    let server = fake_server::start(false).await;
    let args = ["login", "push", "--user", USER_WITH_OPEN_PUSH];
    let output = assent_at(&server.url, &args).await;
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    let expected =
        format!("rate limited: a push for user busy is still open (transaction {TX_PUSH})");
    assert!(message.contains(&expected), "{message}");
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn push_needs_a_user_and_distinct_context_keys() {
    let output = assent(&["--api-key", "x", "login", "push"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--user"));
    let args = [
        "--api-key",
        "x",
        "login",
        "push",
        "--user",
        "alice",
        "--context",
        "a=1",
        "--context",
        "a=2",
    ];
    let output = assent(&args).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("more than once"));
}
