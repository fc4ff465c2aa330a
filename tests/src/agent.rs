//! The real `assent-agent`: enrolled through the library, run as a process.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{TestApp, TestServer, binary, enrollment_code, rp_client};
use crate::within;

/// An enrolled agent state directory (removed on drop).
pub struct EnrolledAgent {
    /// The agent's state directory.
    pub state_dir: PathBuf,
    /// Scratch space beside it for the test.
    pub work: crate::ScratchDir,
    /// The enrolled device.
    pub device_id: String,
}

impl EnrolledAgent {
    /// Enrolls a fresh agent for `user` of `app`.
    pub async fn enroll(server: &TestServer, app: &TestApp, user: &str) -> Self {
        let mut rp = rp_client(server, &app.api_key).await;
        let code = enrollment_code(&mut rp, user).await;
        let work = crate::scratch_dir("ag");
        let state_dir = work.join("agent");
        let config = assent_agent::AgentConfig::new(
            state_dir.clone(),
            server.url(),
            "deny".parse().expect("policy"),
        );
        let enrolled = assent_agent::enroll(&config, &code, "Kiosk 7", false)
            .await
            .expect("enroll the agent");
        Self {
            state_dir,
            work,
            device_id: enrolled.device_id,
        }
    }

    /// Starts `assent-agent run ARGS…` against `server_url`.
    pub fn run(&self, server_url: &str, args: &[&str]) -> AgentProcess {
        let child = Command::new(binary("assent-agent"))
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(["--server", server_url, "run"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the agent");
        AgentProcess(child)
    }

    /// Waits until the running daemon reports an authenticated stream.
    pub async fn wait_connected(&self) {
        within(20, "the agent to connect", async {
            loop {
                let status =
                    assent_agent::daemon_status(&self.state_dir, Duration::from_secs(2)).await;
                if status.is_ok_and(|s| s.connected) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }
}

/// A running agent daemon, killed on drop.
pub struct AgentProcess(Child);

impl AgentProcess {
    /// Waits up to `timeout` for the daemon to exit on its own.
    pub async fn exited_within(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// SIGKILL: the agent gets no chance to say goodbye.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
