//! A tiny bounded run of every `assent-bench` mode against a fresh
//! PostgreSQL database, so the harness cannot rot. It asserts correctness
//! only (no errors, every flow ACCEPTED and seen by the relying party, every
//! idle agent connected), never speed.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;

use assent_tests::TestDb;
use serde_json::Value;

/// Runs the bench with `args` against `db` and returns its JSON report.
fn bench(db: &TestDb, args: &[&str]) -> Value {
    let server = assent_tests::binary("assent-server");
    let output = Command::new(env!("CARGO_BIN_EXE_assent-bench"))
        .args(args)
        .args(["--database-url", &db.url, "--json", "--no-ceiling"])
        .arg("--server-bin")
        .arg(server)
        .output()
        .expect("run assent-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "assent-bench {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}"))
}

fn assert_all_flows_accepted(report: &Value, mode: &str) {
    assert_eq!(report["mode"], mode);
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["flows"].as_u64().unwrap() > 0, "{report}");
    assert!(report["flows_per_s"].as_f64().unwrap() > 0.0, "{report}");
    for key in ["concurrency", "duration_s", "p50_ms", "p95_ms", "p99_ms"] {
        assert!(
            report.get(key).is_some_and(|v| !v.is_null()),
            "{key} missing: {report}"
        );
    }
    assert!(report["ceiling_flows_per_s"].is_null() && report["ratio"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_runs_without_errors() {
    let db = TestDb::create().await;
    let flows = bench(
        &db,
        &[
            "flows",
            "--concurrency",
            "2",
            "--duration",
            "2",
            "--warmup",
            "0.5",
        ],
    );
    assert_all_flows_accepted(&flows, "flows");

    let push = bench(
        &db,
        &[
            "push",
            "--concurrency",
            "2",
            "--devices",
            "4",
            "--duration",
            "1",
            "--warmup",
            "0.5",
        ],
    );
    assert_all_flows_accepted(&push, "push");

    let idle = bench(
        &db,
        &[
            "idle",
            "--agents",
            "20",
            "--duration",
            "0.5",
            "--settle",
            "0.5",
            "--in-flight",
            "8",
        ],
    );
    assert_eq!(idle["mode"], "idle");
    assert_eq!(idle["connected"], 20, "{idle}");
    assert_eq!(idle["still_open"], 20, "{idle}");
    assert_eq!(idle["errors"], 0, "{idle}");
    assert!(idle["server_rss_kb_per_agent"].is_number(), "{idle}");

    let subscribers = bench(&db, &["subscribers", "--agents", "20", "--duration", "1"]);
    assert_eq!(subscribers["mode"], "subscribers");
    assert_eq!(subscribers["subscribers"], 20, "{subscribers}");
    assert!(
        subscribers["commits_per_s_added"].is_number(),
        "{subscribers}"
    );
}
