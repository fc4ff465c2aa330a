//! What a fleet's service manager sees of the real `assent-agent` binary:
//! `READY=1` once the control socket listens, watchdog pings, `STOPPING=1`
//! at SIGTERM (through a datagram socket the test binds as
//! `NOTIFY_SOCKET`), and a control socket at a path and group of the
//! operator's choosing that `otp` and `status` find through `--socket` /
//! `ASSENT_AGENT_SOCKET`.

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
