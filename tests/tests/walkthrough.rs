//! The README walkthrough with real processes: `assent-server`, `assent`
//! and `assent-agent`, driven through their `--json` contracts; then SIGTERM
//! drains the server and it exits 0.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use assent_tests::{TestDb, binary};
use serde_json::Value;

use assent_tests::ChildGuard as Guard;

use assent_tests::ports::free_port;

fn run(cmd: &mut Command) -> Output {
    let output = cmd.output().expect("spawn");
    assert!(
        output.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    output
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn wait_for_port(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("assent-server exited early with {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("assent-server never listened on {port}");
}

fn wait_for_socket(state_dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if state_dir.join("agent.sock").exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the agent never opened its control socket");
}

async fn readme_walkthrough_works_with_real_processes_and_sigterm_drains(db: TestDb) {
    let port = free_port();
    let server_url = format!("http://127.0.0.1:{port}");
    let work = assent_tests::scratch_dir("wt");
    let agent_dir = work.join("agent");

    let server_cmd = |args: &[&str]| {
        let mut cmd = Command::new(binary("assent-server"));
        cmd.args(args)
            .env("ASSENT_DATABASE_URL", &db.url)
            .env("ASSENT_LISTEN", format!("127.0.0.1:{port}"))
            .env_remove("ASSENT_CONFIG");
        cmd
    };
    let mut server = Guard(
        server_cmd(&["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start assent-server"),
    );
    wait_for_port(port, &mut server.0);

    let app = json(&run(&mut server_cmd(&[
        "app",
        "create",
        "--name",
        "Example Shop",
        "--json",
    ])));
    let api_key = app["api_key"].as_str().expect("api_key").to_owned();
    assert!(app["app_id"].is_string());

    let assent = |args: &[&str]| {
        let mut cmd = Command::new(binary("assent"));
        cmd.args(args)
            .env("ASSENT_SERVER", &server_url)
            .env("ASSENT_API_KEY", &api_key);
        cmd
    };
    let agent = |args: &[&str]| {
        let mut cmd = Command::new(binary("assent-agent"));
        cmd.args(args)
            .env("ASSENT_SERVER", &server_url)
            .env("ASSENT_AGENT_DIR", &agent_dir);
        cmd
    };

    let enrollment = json(&run(&mut assent(&[
        "enrollment",
        "create",
        "--user",
        "alice",
        "--json",
    ])));
    let code = enrollment["code"].as_str().expect("code").to_owned();
    assert!(enrollment["expires_at"].is_string());

    let enrolled = json(&run(&mut agent(&[
        "enroll", "--code", &code, "--name", "Kiosk 7", "--json",
    ])));
    let device_id = enrolled["device_id"]
        .as_str()
        .expect("device_id")
        .to_owned();
    assert_eq!(enrolled["user_id"], "alice");
    assert_eq!(enrolled["application_name"], "Example Shop");

    let _daemon = Guard(
        agent(&["run", "--policy", "accept"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start agent daemon"),
    );
    wait_for_socket(&agent_dir);

    let login = json(&run(&mut assent(&[
        "login",
        "otp",
        "--user",
        "alice",
        "--message",
        "Log in to Example Shop?",
        "--context",
        "browser=Firefox",
        "--context",
        "city=Berlin",
        "--json",
    ])));
    let tx = login["transaction_id"]
        .as_str()
        .expect("transaction_id")
        .to_owned();
    let otp = login["otp"].as_str().expect("otp").to_owned();
    assert!(login["expires_at"].is_string());

    let outcome = json(&run(&mut agent(&["otp", &otp, "--json"])));
    assert_eq!(outcome["ok"], true, "{outcome}");
    assert_eq!(outcome["state"], "ACCEPTED");

    let got = json(&run(&mut assent(&["tx", "get", &tx, "--json"])));
    assert_eq!(got["transaction_id"], tx.as_str());
    assert_eq!(got["state"], "ACCEPTED");
    assert_eq!(got["user_id"], "alice");
    assert_eq!(got["device_id"], device_id.as_str());
    let waited = run(&mut assent(&[
        "tx",
        "wait",
        &tx,
        "--timeout",
        "5",
        "--json",
    ]));
    assert_eq!(json(&waited)["state"], "ACCEPTED");

    let events = run(&mut assent(&["events", "--json"]));
    let types: Vec<String> = String::from_utf8_lossy(&events.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("one JSON object per line"))
        .filter(|event| event["transaction_id"] == tx.as_str())
        .map(|event| event["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "transaction.created",
            "transaction.scanned",
            "transaction.accepted"
        ]
    );

    let devices = json(&run(&mut assent(&[
        "devices", "list", "--user", "alice", "--json",
    ])));
    assert_eq!(devices[0]["device_id"], device_id.as_str());
    assert_eq!(devices[0]["name"], "Kiosk 7");
    assert_eq!(devices[0]["revoked"], false);

    // A replayed OTP is refused, with a non-zero exit.
    let replay = agent(&["otp", &otp]).output().expect("spawn");
    assert!(!replay.status.success());

    // SIGTERM drains: the agent's stream is told to go away, the server exits 0.
    let pid = server.0.id().to_string();
    run(Command::new("kill").args(["-TERM", &pid]));
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = server.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not exit within 20 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "SIGTERM must end the server with exit 0, got {status}"
    );
    let _ = std::fs::remove_dir_all(&work);
}

assent_tests::on_both_engines!(readme_walkthrough_works_with_real_processes_and_sigterm_drains,);
