//! Black-box tests of `assent devices list|get|revoke`, with presence.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

#[allow(dead_code)] // shared by several test binaries, each using a part
mod fake_server;
#[allow(dead_code)]
mod support;

use serde_json::{Value, json};

use support::{assent_at, json_stdout, stderr, stdout};

/// What the fake's connected device `d-1` looks like in JSON.
fn connected_device() -> Value {
    json!({
        "device_id": "d-1",
        "user_id": "alice",
        "name": "laptop",
        "revoked": false,
        "created_at": "2023-11-14T22:13:20Z",
        "last_seen_at": "2023-11-14T22:14:20Z",
        "connected": true,
        "last_seen": "2023-11-14T22:14:20Z",
    })
}

#[tokio::test]
async fn devices_list_json_is_an_array_of_devices_with_presence() {
    let server = fake_server::start(false).await;
    let output = assent_at(
        &server.url,
        &["devices", "list", "--user", "alice", "--json"],
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let value = json_stdout(&output);
    let devices = value.as_array().unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[0], connected_device());
    assert_eq!(devices[1]["device_id"], "d-2");
    assert_eq!(devices[1]["revoked"], true);
    assert_eq!(devices[1]["connected"], false);
    assert_eq!(devices[1]["last_seen"], Value::Null);
    assert_eq!(devices[1]["last_seen_at"], Value::Null);
}

#[tokio::test]
async fn devices_list_table_has_a_connected_column() {
    let server = fake_server::start(false).await;
    let output = assent_at(&server.url, &["devices", "list"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let column = lines[0].find("CONNECTED").unwrap();
    assert_eq!(&lines[1][column..column + 3], "yes");
    assert_eq!(&lines[2][column..column + 2], "no");
}

#[tokio::test]
async fn devices_get_json_is_the_same_object_as_a_list_item() {
    let server = fake_server::start(false).await;
    let output = assent_at(&server.url, &["--json", "devices", "get", "d-1"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json_stdout(&output), connected_device());
}

#[tokio::test]
async fn devices_get_human_says_whether_it_is_connected() {
    let server = fake_server::start(false).await;
    let output = assent_at(&server.url, &["devices", "get", "d-2"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.lines()
            .any(|line| line.starts_with("connected") && line.ends_with("no")),
        "{text}"
    );
    assert!(text.contains("revoked"), "{text}");
}

#[tokio::test]
async fn devices_get_unknown_is_not_found() {
    let server = fake_server::start(false).await;
    let output = assent_at(&server.url, &["devices", "get", "d-9", "--json"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("not found: no device d-9"));
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn devices_revoke_prints_the_revoked_device() {
    let server = fake_server::start(false).await;
    let output = assent_at(&server.url, &["devices", "revoke", "d-1", "--json"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let value = json_stdout(&output);
    assert_eq!(value["device_id"], "d-1");
    assert_eq!(value["revoked"], true);
    assert_eq!(value["connected"], false);
}
