//! BENCHMARKS.md's rerun commands work as written: every `assent-bench …`
//! line of its fenced code blocks runs here, shortened (a second of load,
//! a handful of workers, devices and agents, a one-second floor), each on a
//! fresh PostgreSQL database, and must exit 0 with no errors and with every
//! `--json` field the document lists for its mode. Speed is never asserted.
//!
//! Needs the `assent-bench` and `assent-server` binaries of this target
//! directory (`cargo test --workspace` builds them) and, for the floor,
//! `pgbench` (Debian's `postgresql` package): without it the floor is not
//! checked — it says so, or fails with `ASSENT_REQUIRE_TOOLS=1`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use assent_tests::TestDb;
use assent_tests::tools;
use serde_json::Value;

/// The document, as built into this test (a change to it rebuilds the test).
const DOC: &str = include_str!("../../BENCHMARKS.md");

/// How long one shortened command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Flags whose value is capped, with the cap.
const CAPS: &[(&str, f64)] = &[
    ("--concurrency", 4.0),
    ("--devices", 20.0),
    ("--agents", 50.0),
    ("--in-flight", 16.0),
];

/// Flags set to a short value, added when missing.
const SHORT: &[(&str, &str)] = &[
    ("--duration", "1"),
    ("--warmup", "0.5"),
    ("--settle", "0.5"),
    ("--ceiling-seconds", "1"),
];

/// The lines of the document's fenced code blocks, `\`-continued lines joined.
fn fenced_lines(doc: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut inside = false;
    let mut pending = String::new();
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
            continue;
        }
        if !inside {
            continue;
        }
        let line = line.trim();
        match line.strip_suffix('\\') {
            Some(start) => {
                pending.push_str(start);
                pending.push(' ');
            }
            None => {
                pending.push_str(line);
                lines.push(std::mem::take(&mut pending));
            }
        }
    }
    lines
}

/// The arguments of every `assent-bench` command line (the program is the
/// first word, by any path), a `$ ` prompt and a `#` comment removed.
fn bench_commands(doc: &str) -> Vec<Vec<String>> {
    fenced_lines(doc)
        .iter()
        .filter_map(|line| {
            let line = line.strip_prefix("$ ").unwrap_or(line);
            let line = line.split(" #").next().unwrap_or(line);
            let mut words = line.split_whitespace();
            let program = words.next()?;
            (program.rsplit('/').next() == Some("assent-bench"))
                .then(|| words.map(str::to_owned).collect())
        })
        .collect()
}

/// The `--json` fields the document lists per mode: the rows of its
/// "`--json` fields" table, modes in backticks in the first cell, fields in
/// backticks in the second.
fn documented_fields(doc: &str) -> BTreeMap<String, Vec<String>> {
    let section = doc
        .split("\n### ")
        .find(|section| section.starts_with("`--json` fields"))
        .expect("BENCHMARKS.md has a \"### `--json` fields\" section");
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in section.lines().filter(|line| line.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').collect();
        let (Some(modes), Some(names)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        for mode in ticked(modes) {
            fields.entry(mode).or_default().extend(ticked(names));
        }
    }
    fields
}

/// The command shortened for a test run on `database_url`: capped sizes,
/// short durations, `--json`; `$DB` is the database, any other variable is
/// an error in the document.
fn shortened(args: &[String], database_url: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if let Some((_, cap)) = CAPS.iter().find(|(flag, _)| flag == word) {
            let value = words.next().expect("a value after the flag");
            let value: f64 = value.parse().expect("a number");
            out.push(word.clone());
            out.push(value.min(*cap).to_string());
        } else if SHORT.iter().any(|(flag, _)| flag == word) {
            words.next();
        } else if word == "$DB" || word == "${DB}" {
            out.push(database_url.to_owned());
        } else {
            assert!(
                !word.contains('$') && !word.contains('"') && !word.contains('\''),
                "BENCHMARKS.md's command {args:?} uses {word:?}: write it out"
            );
            out.push(word.clone());
        }
    }
    for (flag, value) in SHORT {
        out.push((*flag).to_owned());
        out.push((*value).to_owned());
    }
    if !out.iter().any(|word| word == "--json") {
        out.push("--json".to_owned());
    }
    out
}

/// Whether the command compares with the floor (the default of `flows`).
fn expects_floor(args: &[String]) -> bool {
    let has = |flag: &str| args.iter().any(|word| word == flag);
    let explicit = args
        .windows(2)
        .find(|pair| pair[0] == "--ceiling")
        .map(|pair| pair[1].as_str());
    args.first().map(String::as_str) == Some("flows")
        && !has("--no-ceiling")
        && explicit.is_none_or(|mode| mode == "floor")
        && has("--database-url")
}

fn pgbench_found() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("pgbench").is_file()))
}

/// Runs the bench with `args`; its exit status, stdout and stderr.
async fn run(args: &[String]) -> (std::process::ExitStatus, String, String) {
    let output = tokio::process::Command::new(assent_tests::binary("assent-bench"))
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(COMMAND_TIMEOUT, output)
        .await
        .unwrap_or_else(|_| panic!("assent-bench {args:?} ran over {COMMAND_TIMEOUT:?}"))
        .expect("run assent-bench");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn benchmarks_md_rerun_commands_run_and_report_their_fields() {
    let started = Instant::now();
    let commands = bench_commands(DOC);
    let fields = documented_fields(DOC);
    let modes: Vec<&str> = commands
        .iter()
        .filter_map(|args| args.first().map(String::as_str))
        .collect();
    for mode in ["flows", "push", "idle", "subscribers"] {
        assert!(
            modes.contains(&mode),
            "BENCHMARKS.md has no fenced `assent-bench {mode} …` command: {commands:?}"
        );
    }
    // The server the bench starts is the one next to it.
    assent_tests::binary("assent-server");
    let has_pgbench = pgbench_found();
    if !has_pgbench {
        let message = "benchmarks_doc's floor check needs pgbench (apt-get install postgresql)";
        assert!(
            !tools::tools_required(),
            "{message}; {} is set",
            tools::REQUIRE_TOOLS
        );
        eprintln!("not run: {message}");
    }

    for args in &commands {
        let mode = args.first().expect("a mode");
        let db = TestDb::create().await;
        let line = shortened(args, &db.url);
        let (status, stdout, stderr) = run(&line).await;
        assert!(
            status.success(),
            "BENCHMARKS.md's `assent-bench {}` (run as {line:?}) failed: {stdout}{stderr}",
            args.join(" ")
        );
        let report: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{line:?} printed no JSON object ({e}): {stdout}"));
        assert_eq!(report["mode"], mode.as_str(), "{report}");
        assert_eq!(report["error_count"], 0, "{line:?}: {report}");
        assert_eq!(
            report["errors"],
            serde_json::json!({}),
            "{line:?}: {report}"
        );
        let documented = fields
            .get(mode)
            .unwrap_or_else(|| panic!("BENCHMARKS.md lists no `--json` fields for `{mode}`"));
        for field in documented {
            assert!(
                report.get(field).is_some(),
                "`{field}` is documented for `{mode}` but {line:?} did not report it: {report}"
            );
        }
        if expects_floor(args) && has_pgbench {
            assert!(
                report["floor_flows_per_s"]
                    .as_f64()
                    .is_some_and(|f| f > 0.0)
                    && report["floor_ratio"].is_number(),
                "{line:?} measured no floor: {report}"
            );
        }
    }
    eprintln!(
        "{} BENCHMARKS.md commands ran in {:.1} s",
        commands.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn commands_are_found_in_fenced_blocks_only_and_continuations_are_joined() {
    let doc = "Run `assent-bench flows --x` in prose.\n\
               ```sh\n\
               cargo build -p assent-bench\n\
               target/release/assent-bench push --concurrency 8 \\\n  --duration 15 # comment\n\
               $ assent-bench idle --agents 10000\n\
               ```\n";
    assert_eq!(
        bench_commands(doc),
        [
            vec!["push", "--concurrency", "8", "--duration", "15"],
            vec!["idle", "--agents", "10000"],
        ]
    );
}

#[test]
fn commands_are_shortened_and_their_database_filled_in() {
    let args: Vec<String> = "flows --database-url $DB --concurrency 32 --duration 20"
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let line = shortened(&args, "postgres://h/db").join(" ");
    assert_eq!(
        line,
        "flows --database-url postgres://h/db --concurrency 4 --duration 1 --warmup 0.5 \
         --settle 0.5 --ceiling-seconds 1 --json"
    );
    assert!(expects_floor(&args));
    let none: Vec<String> = ["flows", "--database-url", "$DB", "--ceiling", "none"]
        .map(str::to_owned)
        .to_vec();
    assert!(!expects_floor(&none));
}

#[test]
fn documented_fields_are_read_per_mode() {
    let doc = "## X\n\n### `--json` fields\n\n| mode | fields |\n|---|---|\n\
               | `flows`, `push` | `flows_per_s`, `errors` |\n| `idle` | `connected` |\n\n### Next\n\
               | `subscribers` | `nope` |\n";
    let fields = documented_fields(doc);
    assert_eq!(fields["flows"], ["flows_per_s", "errors"]);
    assert_eq!(fields["push"], ["flows_per_s", "errors"]);
    assert_eq!(fields["idle"], ["connected"]);
    assert!(!fields.contains_key("subscribers"));
}
