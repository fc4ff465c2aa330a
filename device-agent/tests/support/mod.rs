//! A scripted in-process `DeviceService` (the fake server, `fake`, with its
//! transactions in `transactions`) and a handle on an enrolled, running
//! agent daemon, shared by the daemon tests.

// Each test crate uses a different part of the support.
#![allow(dead_code)]

mod fake;
mod transactions;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use assent_agent::{AgentConfig, AgentError, OtpOutcome, Policy};
use tokio_util::sync::CancellationToken;

pub use fake::{DEVICE_ID, Fake};

pub struct Agent {
    dir: tempfile::TempDir,
    shutdown: CancellationToken,
    daemon: tokio::task::JoinHandle<Result<(), AgentError>>,
}

impl Agent {
    /// Enrolls against `fake` and starts a daemon with `policy` on `server`.
    pub async fn start(fake: &Fake, server: Option<SocketAddr>, policy: Policy) -> Agent {
        let (enroll_addr, stop) = fake.clone().start().await;
        let dir = tempfile::tempdir().unwrap();
        let config = AgentConfig::new(
            dir.path().join("state"),
            format!("http://{enroll_addr}"),
            policy.clone(),
        );
        let enrollment = assent_agent::enroll(&config, "good-code", "test device", false)
            .await
            .unwrap();
        assert_eq!(enrollment.device_id, DEVICE_ID);
        // Without a given address the daemon talks to the enrolling server.
        let server = match server {
            Some(server) => {
                stop.cancel();
                server
            }
            None => enroll_addr,
        };
        let config = AgentConfig::new(dir.path().join("state"), format!("http://{server}"), policy);
        let shutdown = CancellationToken::new();
        let daemon = tokio::spawn(assent_agent::run(config, shutdown.clone()));
        let agent = Agent {
            dir,
            shutdown,
            daemon,
        };
        for _ in 0..100 {
            if agent.socket().exists() {
                return agent;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the control socket never appeared");
    }

    pub fn state(&self) -> std::path::PathBuf {
        self.dir.path().join("state")
    }

    pub fn socket(&self) -> std::path::PathBuf {
        self.state().join("agent.sock")
    }

    pub async fn otp(&self, otp: &str) -> OtpOutcome {
        assent_agent::submit_otp(&self.state(), otp, Duration::from_secs(20))
            .await
            .unwrap()
    }

    pub async fn stop(self) {
        let socket = self.socket();
        self.shutdown.cancel();
        self.daemon.await.unwrap().unwrap();
        assert!(!socket.exists(), "the socket is removed at shutdown");
    }
}

pub async fn serve(fake: &Fake) -> SocketAddr {
    fake.clone().start().await.0
}

/// Whether the process is gone (a zombie nobody reaps counts as gone).
pub fn is_gone(pid: &str) -> bool {
    match std::fs::read_to_string(Path::new("/proc").join(pid).join("stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// Waits until `path` holds a complete line and returns it trimmed.
pub async fn wait_for_line(path: &Path) -> String {
    for _ in 0..1000 {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text.trim().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} never got a line", path.display());
}
