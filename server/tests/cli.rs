//! The `assent-server` binary from the outside: subcommands, the embedded
//! engine's single-process rule, and the plaintext guard. (Also makes
//! `cargo test --workspace` build the binary the end-to-end tests run.)

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

fn server() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_assent-server"));
    for (name, _) in std::env::vars() {
        if name.starts_with("ASSENT_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// A fresh directory per call (tests run in parallel threads of one process).
fn data_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("assent-server-cli-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn help_lists_the_subcommands() {
    let output = server().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = text(&output);
    for word in ["serve", "migrate", "app"] {
        assert!(help.contains(word), "{help}");
    }
}

#[test]
fn app_create_and_list_work_on_the_embedded_store() {
    let dir = data_dir();
    let output = server()
        .args(["--data-dir"])
        .arg(&dir)
        .args(["app", "create", "--name", "Example Shop", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let created: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(created["api_key"].as_str().unwrap().starts_with("ak_"));
    let listed = server()
        .args(["--data-dir"])
        .arg(&dir)
        .args(["app", "list", "--json"])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["app_id"], created["app_id"]);
    assert_eq!(listed[0]["name"], "Example Shop");
    let _ = std::fs::remove_dir_all(dir);
}

/// Runs `assent-server --data-dir DIR ARGS… --json` and parses its output.
fn json(dir: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let output = server()
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(output.status.success(), "{args:?}: {}", text(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn app_keys_are_created_listed_and_revoked() {
    let dir = data_dir();
    let app = json(&dir, &["app", "create", "--name", "Shop"]);
    let app_id = app["app_id"].as_str().unwrap();
    let first = app["key_id"].as_str().unwrap();
    let added = json(&dir, &["app", "key", "create", "--app", app_id]);
    assert!(added["api_key"].as_str().unwrap().starts_with("ak_"));
    assert_ne!(added["key_id"], app["key_id"]);
    // A key is named by its id or by the key itself.
    let revoked = json(
        &dir,
        &[
            "app",
            "key",
            "revoke",
            "--app",
            app_id,
            app["api_key"].as_str().unwrap(),
        ],
    );
    assert_eq!(revoked["key_id"], first);
    let keys = json(&dir, &["app", "key", "list", "--app", app_id]);
    let keys = keys.as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let state = |id: &serde_json::Value| {
        keys.iter()
            .find(|k| &k["key_id"] == id)
            .map(|k| k["revoked_at"].is_null())
    };
    assert_eq!(
        state(&app["key_id"]),
        Some(false),
        "the first key is revoked"
    );
    assert_eq!(
        state(&added["key_id"]),
        Some(true),
        "the added key is active"
    );
    let again = server()
        .arg("--data-dir")
        .arg(&dir)
        .args(["app", "key", "revoke", "--app", app_id, first])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        text(&again).contains("no unrevoked key"),
        "{}",
        text(&again)
    );
    // People read the same list with a header and times in UTC with `Z`.
    let listed = server()
        .arg("--data-dir")
        .arg(&dir)
        .args(["app", "key", "list", "--app", app_id])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    let mut lines = listed.lines();
    assert!(
        lines.next().is_some_and(|h| h.starts_with("KEY ID")),
        "{listed}"
    );
    assert!(!listed.contains("+00:00"), "{listed}");
    assert_eq!(lines.filter(|l| l.contains('Z')).count(), 2, "{listed}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn plaintext_on_a_non_loopback_address_is_refused_without_the_flag() {
    let dir = data_dir();
    let output = server()
        .args(["--data-dir"])
        .arg(&dir)
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        text(&output).contains("--insecure-plaintext"),
        "{}",
        text(&output)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_second_server_on_the_same_embedded_store_is_refused() {
    let dir = data_dir();
    let mut first = server()
        .args(["--data-dir"])
        .arg(&dir)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The first server prints its first-run banner once it holds the store.
    let key_file = dir.join("default-api-key");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !key_file.exists() {
        assert!(Instant::now() < deadline, "the first server never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = server()
        .args(["--data-dir"])
        .arg(&dir)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let _ = first.kill();
    let _ = first.wait();
    assert!(!second.status.success());
    assert!(
        text(&second).contains("already serves"),
        "{}",
        text(&second)
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the key file is owner-only");
    let _ = std::fs::remove_dir_all(dir);
}
