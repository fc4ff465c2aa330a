//! A tiny bounded run of every `assent-bench` mode against a fresh
//! PostgreSQL database, so the harness cannot rot. It asserts correctness
//! only (no errors, every flow ACCEPTED and seen by the relying party, every
//! idle agent connected), never speed; and that a run with errors exits
//! non-zero naming them.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;

use assent_tests::TestDb;
use serde_json::Value;

/// Runs the bench with `args` against `db` and returns its exit status,
/// JSON report and standard error.
fn run_bench(db: &TestDb, args: &[&str]) -> (std::process::ExitStatus, Value, String) {
    let server = assent_tests::binary("assent-server");
    let output = Command::new(env!("CARGO_BIN_EXE_assent-bench"))
        .args(args)
        .args(["--database-url", &db.url, "--json", "--no-ceiling"])
        .arg("--server-bin")
        .arg(server)
        .output()
        .expect("run assent-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}{stderr}"));
    (output.status, report, stderr)
}

/// Runs the bench with `args` against `db`, asserts it exits 0 and returns
/// its JSON report.
fn bench(db: &TestDb, args: &[&str]) -> Value {
    let (status, report, stderr) = run_bench(db, args);
    assert!(
        status.success(),
        "assent-bench {args:?} failed: {report}{stderr}"
    );
    assert_eq!(report["error_count"], 0, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    report
}

fn assert_all_flows_accepted(report: &Value, mode: &str) {
    assert_eq!(report["mode"], mode);
    assert!(report["flows"].as_u64().unwrap() > 0, "{report}");
    assert!(report["flows_per_s"].as_f64().unwrap() > 0.0, "{report}");
    for key in ["concurrency", "duration_s", "p50_ms", "p95_ms", "p99_ms"] {
        assert!(
            report.get(key).is_some_and(|v| !v.is_null()),
            "{key} missing: {report}"
        );
    }
    assert!(
        report["floor_flows_per_s"].is_null() && report["floor_ratio"].is_null(),
        "{report}"
    );
    assert!(report["cpu_ms_per_flow"].is_number(), "{report}");
    assert!(report["other_cpu_ms_per_s"].is_number(), "{report}");
    assert!(report["loadavg_1m"].is_number(), "{report}");
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
    assert!(idle["server_rss_kb_per_agent"].is_number(), "{idle}");

    let subscribers = bench(&db, &["subscribers", "--agents", "20", "--duration", "1"]);
    assert_eq!(subscribers["mode"], "subscribers");
    assert_eq!(subscribers["subscribers"], 20, "{subscribers}");
    assert!(
        subscribers["commits_per_s_added"].is_number(),
        "{subscribers}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_errors_exits_non_zero_and_names_them() {
    let db = TestDb::create().await;
    // A burst of two creations per key (the one device's enrollment and the
    // event stream's marker), then one every two seconds: the flows are
    // refused at `create`.
    let (status, report, stderr) = run_bench(
        &db,
        &[
            "flows",
            "--concurrency",
            "1",
            "--devices",
            "1",
            "--duration",
            "1.5",
            "--warmup",
            "0",
            "--server-env",
            "ASSENT_CREATE_RATE_PER_SECOND=0.5",
            "--server-env",
            "ASSENT_CREATE_BURST=2",
        ],
    );
    assert!(!status.success(), "exited 0 with {report}");
    let count = report["error_count"].as_u64().unwrap();
    assert!(count > 0, "{report}");
    let kinds = report["errors"].as_object().unwrap();
    let (kind, _) = kinds
        .iter()
        .find(|(kind, _)| kind.starts_with("create: "))
        .unwrap_or_else(|| panic!("no create error in {report}"));
    assert_eq!(
        kinds.values().map(|n| n.as_u64().unwrap()).sum::<u64>(),
        count
    );
    assert!(
        stderr.contains("the run had errors") && stderr.contains(&format!("{kind} ×")),
        "{stderr}"
    );
}
