//! `assent-agent scan`: the QR code `assent login otp` writes as a PNG is
//! read back and handed in like `otp`, from a file or from stdin, with the
//! same outcome and exit codes; images without an Assent code are refused
//! with a reason.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use assent_tests::agent::EnrolledAgent;
use assent_tests::{TestApp, TestDb, TestServer, binary, rp_client, transaction};
use serde_json::Value;

/// `assent login otp --qr-png FILE --json`: the login's transaction id.
fn login_png(server: &TestServer, app: &TestApp, png: &Path) -> String {
    let output = Command::new(binary("assent"))
        .args(["--json", "login", "otp", "--user", "alice", "--qr-png"])
        .arg(png)
        .env("ASSENT_SERVER", server.url())
        .env("ASSENT_API_KEY", &app.api_key)
        .output()
        .expect("run assent");
    assert!(output.status.success(), "{output:?}");
    let view: Value = serde_json::from_slice(&output.stdout).unwrap();
    view["transaction_id"].as_str().unwrap().to_owned()
}

fn scan(agent: &EnrolledAgent, image: &str, stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(binary("assent-agent"))
        .arg("--state-dir")
        .arg(&agent.state_dir)
        .args(["--json", "scan", image])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run assent-agent scan");
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn report(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("a JSON outcome: {output:?}"))
}

async fn the_agent_scans_the_png_of_a_login(db: TestDb) {
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let agent = EnrolledAgent::enroll(&server, &app, "alice").await;
    let _daemon = agent.run(&server.url(), &["--policy", "accept"]);
    agent.wait_connected().await;
    let mut rp = rp_client(&server, &app.api_key).await;

    let png = agent.work.join("login.png");
    let id = login_png(&server, &app, &png);
    let scanned = scan(&agent, png.to_str().unwrap(), None);
    assert!(scanned.status.success(), "{scanned:?}");
    assert_eq!(report(&scanned)["state"], "ACCEPTED");
    assert_eq!(report(&scanned)["transaction_id"], id.as_str());
    assert_eq!(
        transaction(&mut rp, &id).await.state(),
        assent_proto::v1::TransactionState::Accepted
    );

    // The same from stdin.
    let id = login_png(&server, &app, &png);
    let scanned = scan(&agent, "-", Some(&std::fs::read(&png).unwrap()));
    assert!(scanned.status.success(), "{scanned:?}");
    assert_eq!(report(&scanned)["transaction_id"], id.as_str());

    // A used code is refused like `otp` refuses it: exit 1, the reason.
    let again = scan(&agent, png.to_str().unwrap(), None);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert_eq!(report(&again)["ok"], false);

    // Not an image; no QR code; a QR code that is not an Assent login.
    std::fs::write(&png, b"not an image").unwrap();
    let broken = scan(&agent, png.to_str().unwrap(), None);
    assert_eq!(broken.status.code(), Some(1));
    let said = String::from_utf8_lossy(&broken.stderr);
    assert!(said.contains("cannot read the image"), "{said}");
    assert!(said.contains("PNG or JPEG"), "names the remedy: {said}");
    let blank = agent.work.join("blank.png");
    image::GrayImage::from_pixel(64, 64, image::Luma([255]))
        .save(&blank)
        .unwrap();
    let none = scan(&agent, blank.to_str().unwrap(), None);
    assert_eq!(none.status.code(), Some(1));
    let said = String::from_utf8_lossy(&none.stderr);
    assert!(said.contains("no QR code found"), "{said}");
}

assent_tests::on_both_engines!(the_agent_scans_the_png_of_a_login);
