//! The caller side of the control socket, used by `assent-agent otp|status`
//! and by tests that drive a daemon.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::listener::is_absent;
use super::{ControlRequest, DaemonStatus, OtpOutcome, socket_path};
use crate::AgentError;

/// How long a status query may take when diagnosing a timeout.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// Hands `otp` to the daemon of `state_dir` (socket `state_dir/agent.sock`)
/// and waits up to `timeout` for its outcome; see [`submit_otp_at`].
pub async fn submit_otp(
    state_dir: &Path,
    otp: &str,
    timeout: Duration,
) -> Result<OtpOutcome, AgentError> {
    submit_otp_at(&socket_path(state_dir), otp, timeout).await
}

/// Hands `otp` to the daemon listening on `socket` and waits up to `timeout`
/// for its outcome. A timeout while the daemon has no server connection is
/// reported as [`AgentError::ServerUnreachable`].
pub async fn submit_otp_at(
    socket: &Path,
    otp: &str,
    timeout: Duration,
) -> Result<OtpOutcome, AgentError> {
    let request = ControlRequest {
        otp: Some(otp.to_owned()),
        status: None,
    };
    match tokio::time::timeout(timeout, exchange(socket, &request)).await {
        Ok(line) => parse(&line?),
        Err(_) => {
            let seconds = timeout.as_secs();
            match daemon_status_at(socket, STATUS_TIMEOUT).await {
                Ok(status) if !status.connected => Err(AgentError::ServerUnreachable {
                    server: status.server,
                    detail: format!("the agent could not connect within {seconds} s"),
                }),
                _ => Err(AgentError::OtpTimeout { seconds }),
            }
        }
    }
}

/// Asks the daemon of `state_dir` (socket `state_dir/agent.sock`) for its
/// status.
pub async fn daemon_status(
    state_dir: &Path,
    timeout: Duration,
) -> Result<DaemonStatus, AgentError> {
    daemon_status_at(&socket_path(state_dir), timeout).await
}

/// Asks the daemon listening on `socket` for its status.
pub async fn daemon_status_at(
    socket: &Path,
    timeout: Duration,
) -> Result<DaemonStatus, AgentError> {
    let request = ControlRequest {
        otp: None,
        status: Some(true),
    };
    let line = tokio::time::timeout(timeout, exchange(socket, &request))
        .await
        .map_err(|_| AgentError::Control("no status answer in time".to_owned()))??;
    parse(&line)
}

/// Sends one request line and reads the one answer line.
async fn exchange(path: &Path, request: &ControlRequest) -> Result<String, AgentError> {
    let mut stream = UnixStream::connect(path).await.map_err(|source| {
        if is_absent(&source) {
            AgentError::DaemonNotRunning {
                socket: path.to_owned(),
            }
        } else {
            AgentError::Storage {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    let mut line =
        serde_json::to_string(request).map_err(|error| AgentError::Control(error.to_string()))?;
    line.push('\n');
    let broken = |error: std::io::Error| AgentError::Control(error.to_string());
    stream.write_all(line.as_bytes()).await.map_err(broken)?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .await
        .map_err(broken)?;
    if answer.trim().is_empty() {
        return Err(AgentError::Control(
            "the daemon closed the connection without an answer".to_owned(),
        ));
    }
    Ok(answer)
}

fn parse<T: serde::de::DeserializeOwned>(line: &str) -> Result<T, AgentError> {
    serde_json::from_str(line.trim())
        .map_err(|error| AgentError::Control(format!("{error}: {}", line.trim())))
}
