//! The `desktop` policy as a person meets it, headless: a real X server
//! (Xvfb), a real freedesktop notification server (dunst) on a session bus
//! (dbus-run-session), a real `assent-server` and a real `assent-agent run
//! --policy desktop`. A person's click is dunst's context menu, pointed at a
//! stand-in for dmenu that picks the entry of one action, and `dunstctl
//! context` to open it: dunst then emits `ActionInvoked`, as for a click.
//! Checked: the notification appears (a screenshot is kept under
//! `target/test-artefacts/desktop-request.png`), Accept gives ACCEPTED, a
//! picked number gives ACCEPTED under number matching, no answer lets the
//! login expire, and Not me gives DENIED with `not_me`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use assent_proto::v1::{CreatePushAuthenticationRequest, TransactionState};
use assent_tests::{
    ChildGuard, EnrolledAgent, RpClient, TestApp, TestDb, TestServer, binary, rp_client,
    scratch_dir, transaction, within,
};

/// Whether the desktop programs are here (the suite's convention for tools
/// beyond the README's prerequisites: `assent_tests::tools`).
fn can_run() -> bool {
    assent_tests::tools::can_run("desktop", &[assent_tests::tools::DESKTOP])
}

/// A process group killed on drop (dbus-run-session with its bus and dunst).
struct GroupGuard(std::process::Child);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        for _ in 0..60 {
            if !matches!(self.0.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

/// The agent daemon: SIGTERM on drop (so it stops its notify-send
/// children), SIGKILL if it has not exited within 5 s.
struct AgentGuard(std::process::Child);

impl Drop for AgentGuard {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..100 {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Xvfb, dunst on a session bus, and what a person's pick needs.
struct Desktop {
    dir: PathBuf,
    display: String,
    bus: String,
    _x: ChildGuard,
    _session: GroupGuard,
}

impl Desktop {
    async fn start(dir: &Path) -> Self {
        let (display, x) = start_xvfb().await;
        // The dmenu stand-in picks the menu entry of the action in `pick`
        // (entries read `#Label (summary) [id,action]`).
        let pick_script = dir.join("pick.sh");
        std::fs::write(
            &pick_script,
            format!(
                "#!/bin/sh\ntee -a '{menu}' | grep -F -- \"$(cat '{pick}')\" | head -1\n",
                menu = dir.join("menu.txt").display(),
                pick = dir.join("pick").display()
            ),
        )
        .unwrap();
        let made_executable = Command::new("chmod")
            .arg("+x")
            .arg(&pick_script)
            .status()
            .unwrap();
        assert!(made_executable.success());
        std::fs::create_dir_all(dir.join("dunst")).unwrap();
        std::fs::write(
            dir.join("dunst/dunstrc"),
            format!(
                "[global]\n    dmenu = {}\n    font = Monospace 11\n    width = 420\n",
                pick_script.display()
            ),
        )
        .unwrap();
        let address_file = dir.join("bus-address");
        let script = format!(
            "echo \"$DBUS_SESSION_BUS_ADDRESS\" > '{}.tmp' && mv '{0}.tmp' '{0}' && exec dunst",
            address_file.display()
        );
        let log = std::fs::File::create(dir.join("dunst.log")).unwrap();
        let session = Command::new("dbus-run-session")
            .args(["--", "sh", "-c", &script])
            .env("DISPLAY", &display)
            .env("XDG_CONFIG_HOME", dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start dbus-run-session with dunst");
        let session = GroupGuard(session);
        let bus = within(10, "the session bus address", async {
            loop {
                if let Ok(text) = std::fs::read_to_string(&address_file)
                    && !text.trim().is_empty()
                {
                    return text.trim().to_owned();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let desktop = Desktop {
            dir: dir.to_owned(),
            display,
            bus,
            _x: x,
            _session: session,
        };
        // Before any dunstctl call: one made earlier would have the bus
        // start a second dunst, and ours would lose the name and exit.
        within(10, "dunst to take its name on the bus", async {
            while !desktop.has_notification_server() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert_eq!(desktop.displayed(), Some(0));
        desktop
    }

    /// `dunstctl ARGS…` on this session.
    fn dunstctl(&self, args: &[&str]) -> std::process::Output {
        Command::new("dunstctl")
            .args(args)
            .env("DISPLAY", &self.display)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .output()
            .expect("run dunstctl")
    }

    /// Whether a notification server owns its name on the bus (asked
    /// without activating one).
    fn has_notification_server(&self) -> bool {
        Command::new("dbus-send")
            .args([
                "--session",
                "--print-reply=literal",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                "string:org.freedesktop.Notifications",
            ])
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .output()
            .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains("true"))
    }

    /// How many notifications are on screen; `None` while dunst is not up.
    fn displayed(&self) -> Option<u32> {
        let output = self.dunstctl(&["count", "displayed"]);
        if !output.status.success() {
            return None;
        }
        String::from_utf8_lossy(&output.stdout).trim().parse().ok()
    }

    async fn wait_displayed(&self, count: u32, what: &str) {
        within(20, what, async {
            while self.displayed() != Some(count) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }

    /// Invokes the action `key` of the newest notification, as a click would.
    fn choose(&self, key: &str) {
        std::fs::write(self.dir.join("pick"), format!(",{key}]")).unwrap();
        let output = self.dunstctl(&["context"]);
        assert!(
            output.status.success(),
            "dunstctl context: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A PNG of the whole screen at `path`.
    fn screenshot(&self, path: &Path) {
        let xwd = self.dir.join("screen.xwd");
        let taken = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "xwd -root -silent -display '{}' > '{}'",
                    self.display,
                    xwd.display()
                ),
            ])
            .status()
            .unwrap();
        assert!(taken.success(), "xwd failed");
        let converted = Command::new("convert")
            .arg(&xwd)
            .arg(path)
            .status()
            .unwrap();
        assert!(converted.success(), "convert failed");
    }
}

/// An Xvfb on a free display number.
async fn start_xvfb() -> (String, ChildGuard) {
    let first = 100 + (std::process::id() % 300);
    for number in first..first + 50 {
        if Path::new(&format!("/tmp/.X{number}-lock")).exists() {
            continue;
        }
        let display = format!(":{number}");
        let mut x = ChildGuard(
            Command::new("Xvfb")
                .args([&display, "-screen", "0", "1024x768x24", "-nolisten", "tcp"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start Xvfb"),
        );
        let socket = PathBuf::from(format!("/tmp/.X11-unix/X{number}"));
        for _ in 0..100 {
            if socket.exists() {
                return (display, x);
            }
            if x.0.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("no display number for Xvfb");
}

async fn push(rp: &mut RpClient, ttl_seconds: u32, number_matching: bool) -> (String, u32) {
    let created = rp
        .create_push_authentication(CreatePushAuthenticationRequest {
            user_id: "alice".to_owned(),
            message: "Firefox on Linux wants to sign you in".to_owned(),
            ttl_seconds,
            context: [
                ("ip".to_owned(), "192.0.2.7".to_owned()),
                ("location".to_owned(), "Berlin".to_owned()),
            ]
            .into(),
            number_matching,
            ..Default::default()
        })
        .await
        .expect("create a push")
        .into_inner();
    assert_eq!(created.devices_reached, 1, "the agent is connected");
    (created.transaction_id, created.number)
}

/// Waits for the transaction's terminal state; returns it with its reason.
async fn outcome(rp: &mut RpClient, id: &str, secs: u64) -> (TransactionState, String) {
    within(secs, "the transaction's outcome", async {
        loop {
            let tx = transaction(rp, id).await;
            if !matches!(
                tx.state(),
                TransactionState::Pending | TransactionState::Scanned
            ) {
                return (tx.state(), tx.reason);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

fn artefacts_dir() -> PathBuf {
    // target/<profile>/assent-agent → target/test-artefacts
    let dir = binary("assent-agent")
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("test-artefacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_answers_logins_through_desktop_notifications() {
    if !can_run() {
        return;
    }
    let work = scratch_dir("desk");
    let desktop = Desktop::start(&work).await;

    let db = TestDb::sqlite();
    let server = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let agent = EnrolledAgent::enroll(&server, &app, "alice").await;
    let log = std::fs::File::create(work.join("agent.log")).unwrap();
    let _daemon = AgentGuard(
        Command::new(binary("assent-agent"))
            .arg("--state-dir")
            .arg(&agent.state_dir)
            .args(["--server", &server.url(), "run", "--policy", "desktop"])
            .env("DISPLAY", &desktop.display)
            .env("DBUS_SESSION_BUS_ADDRESS", &desktop.bus)
            .env_remove("ASSENT_AGENT_SOCKET")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the agent"),
    );
    agent.wait_connected().await;
    let mut rp = rp_client(&server, &app.api_key).await;

    // Accept.
    let (id, _) = push(&mut rp, 60, false).await;
    desktop
        .wait_displayed(1, "the login notification to appear")
        .await;
    // Let dunst draw it before the screenshot.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let shot = artefacts_dir().join("desktop-request.png");
    let _ = std::fs::remove_file(&shot);
    desktop.screenshot(&shot);
    let size = std::fs::metadata(&shot).unwrap().len();
    assert!(size > 4_000, "the screenshot is only {size} bytes");
    desktop.choose("accept");
    assert_eq!(
        outcome(&mut rp, &id, 20).await,
        (TransactionState::Accepted, String::new())
    );
    desktop
        .wait_displayed(0, "the answered notification to close")
        .await;

    // Number matching: the person picks the number the login page shows.
    let (id, number) = push(&mut rp, 60, true).await;
    assert!(number >= 10, "a number to show: {number}");
    desktop
        .wait_displayed(1, "the number-matching notification")
        .await;
    desktop.choose(&format!("n{number}"));
    assert_eq!(
        outcome(&mut rp, &id, 20).await,
        (TransactionState::Accepted, String::new())
    );
    desktop
        .wait_displayed(0, "the answered notification to close")
        .await;

    // No answer: the login expires (the shortest TTL), nothing is sent.
    let (id, _) = push(&mut rp, 10, false).await;
    desktop.wait_displayed(1, "the last notification").await;
    let (state, _) = outcome(&mut rp, &id, 30).await;
    assert_eq!(state, TransactionState::Expired);
    desktop
        .wait_displayed(0, "the expired request's notification to close")
        .await;
    // Not me: the fraud denial (last: it holds back further pushes to alice).
    let (id, _) = push(&mut rp, 60, false).await;
    desktop.wait_displayed(1, "the not-me notification").await;
    desktop.choose("not_me");
    assert_eq!(
        outcome(&mut rp, &id, 20).await,
        (TransactionState::Denied, "not_me".to_owned())
    );
    desktop
        .wait_displayed(0, "the answered notification to close")
        .await;

    let menu = std::fs::read_to_string(work.join("menu.txt")).unwrap_or_default();
    assert!(menu.contains("#Not me (Log in to Example Shop?)"), "{menu}");

    drop(desktop);
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn the_desktop_user_unit_verifies() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/assent-agent-desktop.service");
    let text = std::fs::read_to_string(unit).unwrap();
    assert!(text.contains("--policy desktop"), "{text}");
    assert!(text.contains("Type=notify"), "{text}");
    let has_analyze = Command::new("sh")
        .args(["-c", "command -v systemd-analyze"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !has_analyze {
        eprintln!("systemd-analyze not installed: checked the unit's text only");
        return;
    }
    let dir = scratch_dir("uunit");
    // Point ExecStart at this build's binary (systemd checks it exists).
    let bin_dir = binary("assent-agent")
        .parent()
        .unwrap()
        .display()
        .to_string();
    let path = dir.join("assent-agent-desktop.service");
    std::fs::write(&path, text.replace("/usr/local/bin", &bin_dir)).unwrap();
    // A user manager needs a runtime directory, even to verify.
    let runtime = dir.join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    let output = Command::new("systemd-analyze")
        .args(["--user", "verify"])
        .arg(&path)
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "systemd-analyze --user verify: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
