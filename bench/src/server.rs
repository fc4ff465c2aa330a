//! The server under test: either an `assent-server` process started here on
//! a free loopback port (health-checked, with its own application, stopped
//! with SIGTERM), or one that is already running.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::client;

/// How long the started server may take to answer SERVING.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERM-ed server may take to drain before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the load goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The application's API key.
    pub api_key: String,
    /// The server's process id, when known (RSS and CPU figures).
    pub pid: Option<u32>,
}

/// A started `assent-server` process.
pub struct ServerProcess {
    child: Child,
    /// Where it listens and the key of the application created for the run.
    pub target: Target,
}

/// The `assent-server` binary next to this executable.
pub fn default_server_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the bench executable")?;
    let dir = exe
        .parent()
        .context("the bench executable has no directory")?;
    Ok(dir.join("assent-server"))
}

/// A port nobody listens on right now.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).context("no free port")?;
    Ok(listener.local_addr()?.port())
}

impl ServerProcess {
    /// Starts `bin` on `database_url`, waits for SERVING and creates the
    /// `bench` application.
    pub async fn start(
        bin: PathBuf,
        database_url: &str,
        extra_env: &[String],
    ) -> anyhow::Result<Self> {
        if !bin.exists() {
            bail!(
                "{} does not exist: build it (`cargo build --release -p assent-server`) or pass --server-bin",
                bin.display()
            );
        }
        let listen = format!("127.0.0.1:{}", free_port()?);
        let mut env: Vec<(String, String)> = vec![
            ("ASSENT_DATABASE_URL".into(), database_url.to_owned()),
            ("ASSENT_LISTEN".into(), listen.clone()),
            ("ASSENT_CREATE_RATE_PER_SECOND".into(), "1000000".into()),
            ("ASSENT_CREATE_BURST".into(), "1000000".into()),
            ("ASSENT_PUSH_UNANSWERED_LIMIT".into(), "1000000".into()),
            ("ASSENT_DRAIN_TIMEOUT_SECONDS".into(), "5".into()),
            // The bench is one peer (four loopback addresses) holding
            // thousands of connections and calls: lift the per-peer bounds.
            ("ASSENT_MAX_CONNECTIONS".into(), "100000".into()),
            ("ASSENT_MAX_CONNECTIONS_PER_PEER".into(), "100000".into()),
            ("ASSENT_MAX_CONCURRENT_REQUESTS".into(), "100000".into()),
            ("ASSENT_ENROLL_REFUSAL_BURST".into(), "100000".into()),
            ("ASSENT_MAX_SUBSCRIBERS_PER_KEY".into(), "100000".into()),
            ("RUST_LOG".into(), "warn".into()),
        ];
        for pair in extra_env {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("--server-env {pair:?} is not KEY=VALUE"))?;
            env.push((key.to_owned(), value.to_owned()));
        }
        let mut command = Command::new(&bin);
        command.envs(env.iter().cloned());
        let mut server = Self::spawn(command, &listen).await?;
        server.target.api_key = create_app(&bin, &env).await?;
        Ok(server)
    }

    /// Starts this executable's bare transport baseline (`bare-server`).
    pub async fn start_bare(extra_env: &[String]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find the bench executable")?;
        let listen = format!("127.0.0.1:{}", free_port()?);
        let mut command = Command::new(exe);
        command.args(["bare-server", "--listen", &listen]);
        for pair in extra_env {
            let (key, value) = pair
                .split_once('=')
                .with_context(|| format!("--server-env {pair:?} is not KEY=VALUE"))?;
            command.env(key, value);
        }
        Self::spawn(command, &listen).await
    }

    async fn spawn(mut command: Command, listen: &str) -> anyhow::Result<Self> {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the server")?;
        let pid = child.id();
        let mut server = Self {
            child,
            target: Target {
                url: format!("http://{listen}"),
                api_key: String::new(),
                pid,
            },
        };
        server.wait_serving().await?;
        Ok(server)
    }

    async fn wait_serving(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("assent-server exited during start-up: {status}");
            }
            if let Ok(channel) = client::endpoint(client::first(&self.target.url))?
                .connect()
                .await
            {
                let serving = HealthClient::new(channel)
                    .check(HealthCheckRequest::default())
                    .await
                    .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32);
                if serving {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("assent-server did not answer SERVING within {START_TIMEOUT:?}")
    }

    /// SIGTERM, then waits for the drain (SIGKILL after the deadline).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                self.child.kill().await?;
                bail!("assent-server did not stop within {STOP_TIMEOUT:?} of SIGTERM");
            }
        }
        Ok(())
    }
}

/// `assent-server app create --name bench --json` → the API key.
async fn create_app(bin: &PathBuf, env: &[(String, String)]) -> anyhow::Result<String> {
    let output = Command::new(bin)
        .args(["app", "create", "--name", "bench", "--json"])
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run `assent-server app create`")?;
    if !output.status.success() {
        bail!(
            "`assent-server app create` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let created: serde_json::Value = serde_json::from_slice(&output.stdout)
        .context("`assent-server app create --json` printed no JSON")?;
    created["api_key"]
        .as_str()
        .map(str::to_owned)
        .context("`assent-server app create --json` printed no api_key")
}
