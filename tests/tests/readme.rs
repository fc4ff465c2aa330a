//! The README's walkthrough, run word for word: every `sh` block under
//! "## Walkthrough" is concatenated and run by bash (`set -e`), against a
//! server started as *Run it* says, so the README cannot drift from what the
//! programs do. The only change: this build's binaries instead of `cargo
//! build --release`, and a private data directory and port.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use assent_tests::binary;

use assent_tests::ChildGuard as Guard;

/// The `sh` blocks of the README's walkthrough section, in order.
fn walkthrough_blocks(readme: &str) -> Vec<String> {
    let section = readme
        .split("\n## Walkthrough")
        .nth(1)
        .expect("a Walkthrough section")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    let mut blocks = Vec::new();
    let mut rest = section;
    while let Some(start) = rest.find("```sh\n") {
        let body = &rest[start + 6..];
        let end = body.find("\n```").expect("a closed code block");
        blocks.push(body[..end].to_owned());
        rest = &body[end + 4..];
    }
    blocks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = walkthrough_blocks(&readme);
    assert!(blocks.len() >= 3, "the walkthrough's blocks: {blocks:?}");
    let script = blocks.join("\n");
    let bin_dir = binary("assent").parent().unwrap().display().to_string();
    assert!(script.contains("cargo build --release\n"));
    assert!(script.contains("$PWD/target/release"));
    let script = script
        .replace("cargo build --release\n", ": built by the test\n")
        .replace("$PWD/target/release", &bin_dir);

    let work = assent_tests::scratch_dir("readme");
    let port = assent_tests::metrics::free_port();
    let env = |command: &mut Command| {
        command
            .env("ASSENT_DATA_DIR", work.join("data"))
            .env("ASSENT_LISTEN", format!("127.0.0.1:{port}"))
            .env("ASSENT_SERVER", format!("http://127.0.0.1:{port}"))
            .env("ASSENT_METRICS_LISTEN", "off")
            .env("TMPDIR", &work)
            .env_remove("ASSENT_CONFIG")
            .env_remove("ASSENT_DATABASE_URL")
            .env_remove("ASSENT_API_KEY")
            .env_remove("ASSENT_AGENT_DIR");
    };
    // "Run it": the server with no configuration beyond the port.
    let mut serve = Command::new(binary("assent-server"));
    env(&mut serve);
    let _server = Guard(
        serve
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let health = || {
        Command::new(binary("assent-server"))
            .args(["health", "--url", &format!("http://127.0.0.1:{port}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    for _ in 0..100 {
        if health() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The agent started with `&` is stopped when the script ends.
    let script = format!("set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n{script}\n");
    let mut bash = Command::new("bash");
    bash.arg("-c").arg(&script).current_dir(&root);
    env(&mut bash);
    let output = bash.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the walkthrough failed:\n{stdout}\n{stderr}"
    );
    // What the README says the reader sees.
    assert!(stdout.contains("accepted"), "{stdout}");
    assert!(stdout.contains("ACCEPTED"), "{stdout}");
    assert!(stdout.contains("server signature valid"), "{stdout}");
    assert!(stdout.contains("transaction.accepted"), "{stdout}");
    assert!(stdout.contains("Kiosk 7"), "{stdout}");
    let _ = std::fs::remove_dir_all(&work);
}
