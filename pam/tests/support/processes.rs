//! A real `assent-server` and a real enrolled `assent-agent`, as processes
//! killed on drop.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{artifact, free_port, run_ok};

/// A real `assent-server` on its own SQLite data directory; killed on drop.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub api_key: String,
    _data: tempfile::TempDir,
}

impl Server {
    pub fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut child = Command::new(artifact("assent-server"))
            .arg("--data-dir")
            .arg(data.path())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", "off"])
            .env_remove("ASSENT_CONFIG")
            .env_remove("ASSENT_DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let key_file = data.path().join("default-api-key");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() || !key_file.exists() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("assent-server exited before listening: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "assent-server did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let api_key = std::fs::read_to_string(&key_file)
            .unwrap()
            .trim()
            .to_owned();
        Self {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            api_key,
            _data: data,
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A real `assent-agent`, enrolled for one user and running with a policy;
/// killed on drop.
pub struct Agent {
    child: Child,
    _state: tempfile::TempDir,
}

impl Agent {
    pub fn start(server: &Server, user: &str, policy: &str) -> Self {
        let enrollment = run_ok(
            Command::new(artifact("assent"))
                .args(["--server", &server.url, "--api-key", &server.api_key])
                .args(["enrollment", "create", "--user", user, "--json"]),
        );
        let enrollment: serde_json::Value = serde_json::from_str(&enrollment).unwrap();
        let code = enrollment["code"].as_str().unwrap();
        let state = tempfile::tempdir().unwrap();
        let state_dir = state.path().to_owned();
        let agent = |args: &[&str]| {
            let mut command = Command::new(artifact("assent-agent"));
            command
                .arg("--state-dir")
                .arg(&state_dir)
                .args(["--server", &server.url])
                .args(args)
                .env_remove("ASSENT_AGENT_SOCKET");
            command
        };
        run_ok(&mut agent(&[
            "enroll", "--code", code, "--name", "pam test", "--json",
        ]));
        let child = agent(&["run", "--policy", policy])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let agent_process = Self {
            child,
            _state: state,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = agent(&["status", "--json"]).output().unwrap();
            let status: serde_json::Value =
                serde_json::from_slice(&status.stdout).unwrap_or_default();
            if status["connected"] == true {
                return agent_process;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not connect within 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
