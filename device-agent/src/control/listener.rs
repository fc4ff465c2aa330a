//! The daemon side of the control socket: binds it safely, accepts callers
//! and turns each request line into a [`ControlCommand`] for the event loop.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use assent_device::{DeviceHandle, OtpOutcome};

use assent_device::otp::Otp;

use super::{ControlRequest, DaemonStatus, SocketGroup, Target};
use crate::AgentError;

/// Longest request line accepted (an OTP is 64 characters).
const MAX_REQUEST: usize = 64 * 1024;
/// How long connections may take to deliver their last answers at shutdown.
const DRAIN: Duration = Duration::from_secs(2);
/// How often a caller that half-closed is checked for a full hang-up.
const HANGUP_POLL: Duration = Duration::from_millis(250);

/// Binds the socket at `path`, replacing a stale file but never a live
/// daemon. Without `group` the socket is mode 0600; with one it belongs to
/// that group, mode 0660. A missing parent directory is created (0700, or
/// 0750 with the group).
pub(crate) async fn bind(
    path: &Path,
    group: Option<&SocketGroup>,
) -> Result<UnixListener, AgentError> {
    let storage = |path: &Path| {
        let path = path.to_owned();
        move |source| AgentError::Storage { path, source }
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        prepare_directory(dir, group).map_err(storage(dir))?;
    }
    if fs::symlink_metadata(path).is_ok() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(AgentError::AlreadyRunning {
                socket: path.to_owned(),
            });
        }
        // Nobody answers: a daemon died without cleaning up.
        fs::remove_file(path).map_err(storage(path))?;
    }
    let listener = UnixListener::bind(path).map_err(storage(path))?;
    // The state directory is 0700, so the short window before this chmod
    // exposes nothing; the mode guards against a directory with wider rights.
    let mode = match group {
        Some(group) => {
            chown_group(path, group).map_err(storage(path))?;
            0o660
        }
        None => 0o600,
    };
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(storage(path))?;
    Ok(listener)
}

/// Creates the socket's directory when missing; warns when the group
/// cannot traverse an existing one (its members could not reach the socket).
fn prepare_directory(dir: &Path, group: Option<&SocketGroup>) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(metadata) => {
            if let Some(group) = group {
                let mode = metadata.mode();
                let is_traversable =
                    mode & 0o001 != 0 || (mode & 0o010 != 0 && metadata.gid() == group.gid);
                if !is_traversable {
                    tracing::warn!(
                        directory = %dir.display(),
                        group = %group,
                        mode = format!("{:o}", mode & 0o7777),
                        "the socket group cannot traverse the socket's directory; \
                         give the directory to the group with mode 0750 (or 0711)"
                    );
                }
            }
            Ok(())
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let mode = if group.is_some() { 0o750 } else { 0o700 };
            fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)?;
            if let Some(group) = group {
                chown_group(dir, group)?;
                // The umask may have narrowed the mode.
                fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
            }
            Ok(())
        }
        Err(error) => Err(error),
    }
}

/// Gives `path` to `group`, keeping its owner.
fn chown_group(path: &Path, group: &SocketGroup) -> io::Result<()> {
    std::os::unix::fs::chown(path, None, Some(group.gid))
}

/// Accepts callers until `stop` fires, then lets open connections deliver
/// their final answers for a moment before dropping them.
pub(crate) async fn serve<T: Target>(listener: UnixListener, target: T, stop: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(answer(stream, target.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a control connection");
                    // Typically out of file descriptors: do not spin.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(target);
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        connections.shutdown().await;
    }
}

/// Serves one caller: reads its request line and writes the single answer.
async fn answer<T: Target>(mut stream: UnixStream, target: T) {
    let response = match read_request(&mut stream).await {
        Ok(request) => respond(request, &mut stream, &target).await,
        Err(error) => Some(serialise(&OtpOutcome::failed(None, error))),
    };
    if let Some(mut line) = response {
        line.push('\n');
        if let Err(error) = stream.write_all(line.as_bytes()).await {
            tracing::debug!(%error, "the control caller left before the answer");
        }
    }
}

/// The daemon's device behind the socket.
#[derive(Clone)]
pub(crate) struct DaemonTarget {
    /// The running device.
    pub(crate) device: DeviceHandle,
    /// The policy in force, as configured.
    pub(crate) policy: Arc<str>,
    /// The server list, as configured.
    pub(crate) server: Arc<str>,
}

impl Target for DaemonTarget {
    async fn submit(&self, otp: Otp) -> OtpOutcome {
        self.device.submit(otp).await
    }

    async fn status(&self) -> Option<DaemonStatus> {
        let status = self.device.status().await?;
        Some(DaemonStatus {
            ok: true,
            connected: status.connected,
            device_id: status.profile.device_id,
            user_id: status.profile.user_id,
            application_name: status.profile.application_name,
            server: self.server.to_string(),
            policy: self.policy.to_string(),
        })
    }
}

/// Handles a parsed request; `None` when the caller hung up meanwhile.
async fn respond<T: Target>(
    request: ControlRequest,
    stream: &mut UnixStream,
    target: &T,
) -> Option<String> {
    if let Some(text) = request.otp {
        let otp = match Otp::parse(&text) {
            Ok(otp) => otp,
            Err(malformed) => {
                return Some(serialise(&OtpOutcome::failed(None, malformed.to_string())));
            }
        };
        let outcome = tokio::select! {
            outcome = target.submit(otp) => outcome,
            // Dropping the submission tells the device nobody waits any more.
            () = hung_up(stream) => return None,
        };
        return Some(serialise(&outcome));
    }
    if request.status == Some(true) {
        return Some(match target.status().await {
            Some(status) => serialise(&status),
            None => serialise(&OtpOutcome::failed(
                None,
                "the agent daemon is shutting down",
            )),
        });
    }
    Some(serialise(&OtpOutcome::failed(
        None,
        r#"unknown request: expected {"otp":"…"} or {"status":true}"#,
    )))
}

/// Reads bytes up to the first newline (or EOF) and parses them as JSON.
async fn read_request(stream: &mut UnixStream) -> Result<ControlRequest, String> {
    let mut buffer = Vec::new();
    loop {
        let mut chunk = [0u8; 1024];
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|error| format!("cannot read the request: {error}"))?;
        buffer.extend_from_slice(&chunk[..read]);
        if read == 0 || buffer.contains(&b'\n') {
            break;
        }
        if buffer.len() > MAX_REQUEST {
            return Err("request too long".to_owned());
        }
    }
    parse_request(&buffer)
}

/// Parses the first line of what a caller sent (anything after it is
/// ignored); a refusal says what is wrong.
pub(super) fn parse_request(buffer: &[u8]) -> Result<ControlRequest, String> {
    let line = buffer
        .split(|byte| *byte == b'\n')
        .next()
        .unwrap_or_default();
    serde_json::from_slice(line).map_err(|error| format!("invalid request: {error}"))
}

/// Resolves once the caller has closed the connection. A caller that only
/// shut down its writing side still waits for the answer, so end of input
/// alone is not a hang-up; the socket's write-closed state is.
async fn hung_up(stream: &mut UnixStream) {
    let mut scratch = [0u8; 256];
    // Anything after the request line is ignored.
    while let Ok(read) = stream.read(&mut scratch).await {
        if read == 0 {
            break;
        }
    }
    loop {
        match stream.ready(Interest::WRITABLE).await {
            Ok(ready) if !ready.is_write_closed() => tokio::time::sleep(HANGUP_POLL).await,
            _ => return,
        }
    }
}

/// One response line; the answer types always serialise, the fallback is a formality.
fn serialise<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| {
        r#"{"ok":false,"state":null,"transaction_id":null,"reason":null,"error":"internal error"}"#
            .to_owned()
    })
}

/// Whether an error from connecting to the socket means "no daemon there".
pub(super) fn is_absent(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    )
}
