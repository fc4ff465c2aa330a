//! The Python example backend (`examples/backend-python/login.py`, grpcio)
//! against a real server and a real enrolled `assent-agent`: the OTP the
//! script prints is handed to the agent, as a device scanning its QR code
//! would; an accepting agent logs alice in (exit 0, "Logged in as alice"),
//! a denying one gets the refusal ("Login refused: denied (policy)", exit
//! 1), and a wrong API key or no server ends the script with one line
//! saying which.
//!
//! Needs a venv with the example's packages in `target/backend-python-venv`
//! (`.ci/run` makes it; `tools::BACKEND_PYTHON_PACKAGES` says how).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use assent_tests::agent::EnrolledAgent;
use assent_tests::{TestApp, TestDb, TestServer, binary, tools, within};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

fn login_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/backend-python/login.py")
}

/// What one run of `login.py alice` did.
struct Run {
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: String,
    /// `assent-agent otp --json`'s answer, when the OTP was handed in.
    agent: Option<Value>,
}

/// Runs `login.py alice` against the server at `addr` (host:port) with
/// `api_key`, reading its output line by line; the OTP it prints goes to
/// `agent` (`assent-agent otp`).
async fn login(addr: &str, api_key: &str, agent: Option<&EnrolledAgent>) -> Run {
    let mut child = Command::new(tools::backend_python())
        .arg(login_py())
        .arg("alice")
        .env("ASSENT_SERVER", addr)
        .env("ASSENT_API_KEY", api_key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start login.py with the venv's python");
    let mut stderr_pipe = child.stderr.take().expect("login.py's stderr");
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        stderr_pipe
            .read_to_string(&mut text)
            .await
            .expect("read login.py's stderr");
        text
    });
    let mut lines = BufReader::new(child.stdout.take().expect("login.py's stdout")).lines();
    let mut stdout = Vec::new();
    let mut handed = None;
    within(60, "login.py to finish", async {
        while let Some(line) = lines.next_line().await.expect("read login.py's stdout") {
            eprintln!("login.py: {line}");
            if let (Some(agent), None, Some((_, otp))) =
                (agent, &handed, line.split_once("assent-agent otp "))
            {
                let output = Command::new(binary("assent-agent"))
                    .arg("--state-dir")
                    .arg(&agent.state_dir)
                    .args(["--json", "otp", otp.trim(), "--timeout", "30"])
                    .env_remove("ASSENT_AGENT_SOCKET")
                    .output()
                    .await
                    .expect("run assent-agent otp");
                let answer: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
                    panic!(
                        "assent-agent otp printed no JSON ({e}): {}",
                        String::from_utf8_lossy(&output.stderr)
                    )
                });
                handed = Some(answer);
            }
            stdout.push(line);
        }
    })
    .await;
    let status = within(30, "login.py to exit", child.wait())
        .await
        .expect("wait for login.py");
    let stderr = stderr.await.expect("stderr reader");
    if !stderr.is_empty() {
        eprintln!("login.py (stderr): {stderr}");
    }
    Run {
        status,
        stdout,
        stderr,
        agent: handed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_logs_in_with_a_real_agent_and_refuses_otherwise() {
    if !tools::can_run("backend_python", &[tools::BACKEND_PYTHON_PACKAGES]) {
        return;
    }
    let db = TestDb::create().await;
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let agent = EnrolledAgent::enroll(&server, &app, "alice").await;
    let addr = server.addr.to_string();

    // Accepted: the script checks the binding and the server's signature,
    // then logs alice in.
    let mut daemon = agent.run(&server.url(), &["--policy", "accept"]);
    agent.wait_connected().await;
    let run = login(&addr, &app.api_key, Some(&agent)).await;
    let answer = run.agent.as_ref().expect("login.py printed an OTP");
    assert_eq!(answer["state"], "ACCEPTED", "{answer}");
    assert!(run.status.success(), "{}: {:?}", run.status, run.stdout);
    let last = run.stdout.last().map(String::as_str).unwrap_or_default();
    assert!(
        last.starts_with("Logged in as alice (outcome signed by server key "),
        "{:?}",
        run.stdout
    );
    daemon.kill();

    // Denied: the refusal, never a login.
    let mut daemon = agent.run(&server.url(), &["--policy", "deny"]);
    agent.wait_connected().await;
    let run = login(&addr, &app.api_key, Some(&agent)).await;
    let answer = run.agent.as_ref().expect("login.py printed an OTP");
    assert_eq!(answer["state"], "DENIED", "{answer}");
    assert_eq!(run.status.code(), Some(1), "{:?}", run.stdout);
    let last = run.stdout.last().map(String::as_str).unwrap_or_default();
    assert!(
        last.starts_with("Login refused: denied"),
        "{:?}",
        run.stdout
    );
    assert!(!run.stdout.iter().any(|line| line.starts_with("Logged in")));
    daemon.kill();

    // A wrong API key: one line saying so, no traceback, no OTP.
    let mut wrong_key = app.api_key.clone();
    let last = wrong_key.pop().expect("a non-empty key");
    wrong_key.push(if last == 'A' { 'B' } else { 'A' });
    let run = login(&addr, &wrong_key, None).await;
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{:?}", run.stdout);
    assert_eq!(run.stderr.trim_end().lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("error: the API key was refused: "),
        "{}",
        run.stderr
    );

    // No server at the address: one line naming it.
    let closed = assent_tests::ports::free_address().to_string();
    let run = login(&closed, &app.api_key, None).await;
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{:?}", run.stdout);
    assert_eq!(run.stderr.trim_end().lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with(&format!(
            "error: cannot reach the Assent server at {closed} "
        )),
        "{}",
        run.stderr
    );
}
