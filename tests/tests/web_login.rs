//! The mission's own picture, end to end in a real browser: the example web
//! backend (`examples/web-login`, Node) shows a login page; headless
//! Chromium logs in as alice; the QR code is taken from a screenshot by
//! `assent-agent scan`; the agent's policy answers; the page shows "Logged
//! in as alice" — or the refusal when the agent denies, and nothing when the
//! agent is stopped.
//!
//! Needs Node.js, `npm ci` in examples/web-login and Debian's `chromium`
//! (`.ci/run` installs what is missing).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use assent_tests::agent::EnrolledAgent;
use assent_tests::{TestApp, TestDb, TestServer, binary, tools};
use serde_json::Value;

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/web-login")
}

/// The example web backend, killed on drop.
struct WebBackend {
    child: Child,
    url: String,
}

impl WebBackend {
    fn start(server: &TestServer, api_key: &str) -> Self {
        let mut child = Command::new("node")
            .arg(example_dir().join("server.mjs"))
            .env("ASSENT_SERVER", server.addr.to_string())
            .env("ASSENT_API_KEY", api_key)
            .env("PORT", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node (is Node.js installed?)");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let url = first
            .split_whitespace()
            .find(|word| word.starts_with("http://127.0.0.1:"))
            .unwrap_or_else(|| panic!("the example did not say where it listens: {first:?}"))
            .to_owned();
        Self { child, url }
    }
}

impl Drop for WebBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the browser driver; its report and whether the page showed `expect`.
fn browse(web: &WebBackend, agent: &EnrolledAgent, expect: &str, wait_ms: u32) -> (Value, bool) {
    let shot = agent.work.join("login-page.png");
    let scan = serde_json::json!([
        binary("assent-agent"),
        "--state-dir",
        agent.state_dir,
        "scan",
    ]);
    let output = Command::new("node")
        .arg(example_dir().join("test/browser.mjs"))
        .env("URL", &web.url)
        .env("USER", "alice")
        .env("EXPECT", expect)
        .env("SHOT", &shot)
        .env("AGENT", scan.to_string())
        .env("WAIT_MS", wait_ms.to_string())
        .output()
        .expect("run the browser driver");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| {
            panic!(
                "no report from the driver; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    (report, output.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_with_the_qr_code_the_agent_scans() {
    if !tools::can_run("web_login", &[tools::CHROMIUM, tools::WEB_LOGIN_PACKAGES]) {
        return;
    }
    let db = TestDb::create().await;
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let agent = EnrolledAgent::enroll(&server, &app, "alice").await;
    let web = WebBackend::start(&server, &app.api_key);

    // Accepted: the page logs alice in after checking the signed outcome.
    let mut daemon = agent.run(&server.url(), &["--policy", "accept"]);
    agent.wait_connected().await;
    let (report, ok) = browse(&web, &agent, "Logged in as alice", 20_000);
    assert!(ok, "{report}");
    assert_eq!(report["scan"]["status"], 0, "{report}");
    assert_eq!(report["shown"], "Logged in as alice");
    daemon.kill();

    // Denied: the page shows the refusal, never a login.
    let mut daemon = agent.run(&server.url(), &["--policy", "deny"]);
    agent.wait_connected().await;
    let (report, ok) = browse(&web, &agent, "Login refused: denied", 20_000);
    assert!(ok, "{report}");
    assert_ne!(report["scan"]["status"], 0, "a denied login fails the scan");
    daemon.kill();

    // Agent stopped: the scan fails and the page never logs anyone in.
    let (report, ok) = browse(&web, &agent, "Logged in as alice", 3_000);
    assert!(!ok, "{report}");
    assert_ne!(report["scan"]["status"], 0, "{report}");
    let said = report["scan"]["stderr"].as_str().unwrap_or_default();
    assert!(said.contains("daemon"), "the scan says why: {said}");
}
