//! HAProxy with the repository's `deploy/haproxy.cfg` in front of test
//! servers: the load balancer a deployment runs, started as a process.

#![allow(clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{ChildGuard, binary, within};

/// A running HAProxy; stopped when dropped.
pub struct Haproxy {
    /// `http://127.0.0.1:PORT`, the address clients use.
    pub url: String,
    _child: ChildGuard,
}

impl Haproxy {
    /// Starts HAProxy with the three replica addresses of the shipped
    /// configuration (one server may stand for several) and waits until it
    /// serves health checks. Panics, naming the package, when HAProxy is
    /// not installed.
    pub async fn start(replicas: [SocketAddr; 3]) -> Self {
        let found = Command::new("sh")
            .args(["-c", "command -v haproxy"])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(found, "this test needs HAProxy: apt-get install haproxy");
        let port = crate::ports::free_port();
        let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/haproxy.cfg");
        let mut command = Command::new("haproxy");
        command
            .args(["-db", "-f"])
            .arg(&config)
            .env("ASSENT_LB_BIND", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (n, replica) in replicas.iter().enumerate() {
            command.env(format!("ASSENT_REPLICA_{}", n + 1), replica.to_string());
        }
        let child = ChildGuard(command.spawn().expect("start haproxy"));
        let url = format!("http://127.0.0.1:{port}");
        within(15, "HAProxy to serve", async {
            loop {
                let health = Command::new(binary("assent-server"))
                    .args(["health", "--url", &url])
                    .output()
                    .is_ok_and(|o| o.status.success());
                if health {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        Self { url, _child: child }
    }
}
