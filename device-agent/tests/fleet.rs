//! What a fleet's service manager sees of the real `assent-agent` binary:
//! `READY=1` once the control socket listens, watchdog pings, `STOPPING=1`
//! at SIGTERM (through a datagram socket the test binds as
//! `NOTIFY_SOCKET`), and a control socket at a path and group of the
//! operator's choosing that `otp` and `status` find through `--socket` /
//! `ASSENT_AGENT_SOCKET`; and enrollment from a picture of the enrollment
//! QR code (`enroll --scan IMAGE|-`).

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use assent_agent::{AgentConfig, Policy};
use tokio::net::UnixDatagram;

use support::{DEVICE_ID, Fake, serve};

const BINARY: &str = env!("CARGO_BIN_EXE_assent-agent");

/// The next notification, within 10 s.
async fn next_state(notify: &UnixDatagram) -> String {
    let mut buffer = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(10), notify.recv(&mut buffer))
        .await
        .expect("a notification within 10 s")
        .unwrap();
    String::from_utf8_lossy(&buffer[..read]).into_owned()
}

/// A group this process may give its files to, by name when it is root
/// (exercising the lookup), else its own GID.
fn usable_group(dir: &Path) -> (String, u32) {
    if std::fs::metadata("/proc/self").unwrap().uid() == 0 {
        let gid = assent_agent::SocketGroup::resolve("daemon").map_or(0, |group| group.gid);
        let name = if gid == 0 { "root" } else { "daemon" };
        return (name.to_owned(), gid);
    }
    let gid = std::fs::metadata(dir).unwrap().gid();
    (gid.to_string(), gid)
}

async fn agent(args: &[&str], envs: &[(&str, &Path)]) -> std::process::Output {
    let mut command = tokio::process::Command::new(BINARY);
    command.args(args).env_remove("ASSENT_AGENT_SOCKET");
    for (name, value) in envs {
        command.env(name, value);
    }
    tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("the command ends within 30 s")
        .unwrap()
}

#[tokio::test]
async fn a_notify_unit_hears_ready_watchdog_and_stopping_and_callers_find_the_group_socket() {
    let fake = Fake::default();
    let addr = serve(&fake).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = AgentConfig::new(state.clone(), format!("http://{addr}"), Policy::Accept);
    assent_agent::enroll(&config, "good-code", "laptop", false)
        .await
        .unwrap();
    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let socket = dir.path().join("run/assent-agent/agent.sock");
    let (group, gid) = usable_group(dir.path());
    let mut daemon = tokio::process::Command::new(BINARY)
        .arg("--socket")
        .arg(&socket)
        .args(["run", "--policy", "accept", "--socket-group", &group])
        .env("ASSENT_AGENT_DIR", &state)
        .env("NOTIFY_SOCKET", &notify_path)
        // Pings every 150 ms.
        .env("WATCHDOG_USEC", "300000")
        .env_remove("WATCHDOG_PID")
        .env_remove("ASSENT_SERVER")
        .env_remove("ASSENT_AGENT_SOCKET")
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    assert_eq!(next_state(&notify).await, "READY=1");
    // Ready means callers can connect: the socket is there already.
    let metadata = std::fs::metadata(&socket).expect("the socket exists when READY=1 is sent");
    assert_eq!(metadata.permissions().mode() & 0o777, 0o660);
    assert_eq!(metadata.gid(), gid);
    let parent = std::fs::metadata(socket.parent().unwrap()).unwrap();
    assert_eq!(parent.permissions().mode() & 0o777, 0o750);
    assert!(
        !state.join("agent.sock").exists(),
        "no socket in the state directory"
    );
    for _ in 0..3 {
        assert_eq!(next_state(&notify).await, "WATCHDOG=1");
    }

    // A caller without access to the state directory finds the daemon
    // through the socket alone.
    let elsewhere = dir.path().join("caller-state");
    let (otp, _) = fake.new_otp();
    let output = agent(
        &["otp", &otp],
        &[
            ("ASSENT_AGENT_SOCKET", &socket),
            ("ASSENT_AGENT_DIR", &elsewhere),
        ],
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = agent(
        &["--socket", socket.to_str().unwrap(), "status", "--json"],
        &[("ASSENT_AGENT_DIR", &elsewhere)],
    )
    .await;
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["running"], true);
    assert_eq!(status["device_id"], DEVICE_ID);
    // Without the socket option the same caller finds no daemon.
    let output = agent(&["status", "--json"], &[("ASSENT_AGENT_DIR", &elsewhere)]).await;
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["running"], false);

    let pid = daemon.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let stopping = async {
        loop {
            let state = next_state(&notify).await;
            if state != "WATCHDOG=1" {
                return state;
            }
        }
    };
    assert_eq!(stopping.await, "STOPPING=1");
    let exit = tokio::time::timeout(Duration::from_secs(10), daemon.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(!socket.exists(), "the socket is removed at shutdown");
}

#[tokio::test]
async fn an_unknown_socket_group_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let output = agent(
        &[
            "run",
            "--policy",
            "deny",
            "--socket-group",
            "no-such-group-assent",
        ],
        &[("ASSENT_AGENT_DIR", dir.path())],
    )
    .await;
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("no group \"no-such-group-assent\""), "{said}");
}

/// A PNG of a QR code holding `text`.
fn qr_png(text: &str) -> Vec<u8> {
    let code = qrcode::QrCode::new(text.as_bytes()).unwrap();
    let image = code
        .render::<image::Luma<u8>>()
        .module_dimensions(6, 6)
        .build();
    let mut png = Vec::new();
    image::DynamicImage::ImageLuma8(image)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png
}

fn enrollment_qr(server: Option<String>) -> String {
    assent_device::EnrollmentQr {
        server,
        code: "good-code".into(),
        application_name: Some("Example Shop".into()),
    }
    .to_payload()
}

#[tokio::test]
async fn enroll_scan_takes_the_code_and_server_from_the_qr_image() {
    let fake = Fake::default();
    let addr = serve(&fake).await;
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("enroll.png");
    std::fs::write(
        &image,
        qr_png(&enrollment_qr(Some(format!("http://{addr}")))),
    )
    .unwrap();
    let state = dir.path().join("state");
    let output = tokio::process::Command::new(BINARY)
        .args(["enroll", "--json", "--name", "laptop", "--scan"])
        .arg(&image)
        .env("ASSENT_AGENT_DIR", &state)
        .env_remove("ASSENT_SERVER")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let enrolled: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(enrolled["device_id"], DEVICE_ID);
    let profile = assent_agent::credentials::load_profile(&state)
        .unwrap()
        .unwrap();
    assert_eq!(profile.server, format!("http://{addr}"));
}

#[tokio::test]
async fn enroll_scan_reads_stdin_and_an_explicit_server_wins() {
    use tokio::io::AsyncWriteExt as _;
    let fake = Fake::default();
    let addr = serve(&fake).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // The QR names a server nobody listens on; --server overrides it.
    let png = qr_png(&enrollment_qr(Some("http://127.0.0.1:9".into())));
    let mut child = tokio::process::Command::new(BINARY)
        .args([
            "--server",
            &format!("http://{addr}"),
            "enroll",
            "--scan",
            "-",
        ])
        .env("ASSENT_AGENT_DIR", &state)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&png).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let profile = assent_agent::credentials::load_profile(&state)
        .unwrap()
        .unwrap();
    assert_eq!(profile.server, format!("http://{addr}"));
}

#[tokio::test]
async fn enroll_scan_of_an_image_without_an_enrollment_code_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("otp.png");
    std::fs::write(&image, qr_png("https://example.com/not-an-enrollment")).unwrap();
    let output = agent(
        &["enroll", "--scan", image.to_str().unwrap()],
        &[("ASSENT_AGENT_DIR", dir.path())],
    )
    .await;
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("error:"), "{said}");
    assert!(!dir.path().join("device.json").exists());
    // Neither a code nor an image: clap refuses.
    let output = agent(&["enroll"], &[("ASSENT_AGENT_DIR", dir.path())]).await;
    assert!(!output.status.success());
}
