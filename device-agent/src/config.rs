//! Typed settings of the agent with their built-in defaults; `main.rs` layers
//! environment variables and flags on top.

use std::path::PathBuf;
use std::time::Duration;

use crate::control::SocketGroup;
use crate::policy::Policy;

pub use assent_device::{DEFAULT_SERVER, MAX_DEVICE_NAME_CHARS};
/// How long an `exec:` policy command may run before the login is denied.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);
/// Device name used when the host name cannot be found.
const FALLBACK_DEVICE_NAME: &str = "assent-agent";

/// Everything the daemon and the enrollment need to know.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Directory holding `device.key`, `device.json` and, by default, `agent.sock`.
    pub state_dir: PathBuf,
    /// The Assent server URL (`http://` or `https://`).
    pub server: String,
    /// How confirmation requests are answered.
    pub policy: Policy,
    /// Upper bound on the run time of an `exec:` policy command.
    pub exec_timeout: Duration,
    /// PEM file with the CA that signed the server certificate (`https://` only).
    pub ca_cert: Option<PathBuf>,
    /// The client certificate and key presented to a server that asks
    /// (mutual TLS).
    pub client_identity: Option<assent_device::ClientIdentity>,
    /// Where the control socket listens; `None`: `state_dir/agent.sock`.
    pub socket: Option<PathBuf>,
    /// The group that may use the control socket (mode 0660); `None`: only
    /// the daemon's user (mode 0600).
    pub socket_group: Option<SocketGroup>,
}

impl AgentConfig {
    /// The SDK's settings of this agent's one enrollment.
    pub fn device(&self) -> assent_device::DeviceConfig {
        assent_device::DeviceConfig {
            ca_cert: self.ca_cert.clone(),
            client_identity: self.client_identity.clone(),
            ..assent_device::DeviceConfig::new(self.state_dir.clone(), self.server.clone())
        }
    }

    /// A configuration with the default exec timeout, no custom CA and the
    /// control socket in the state directory, for the daemon's user only.
    pub fn new(state_dir: PathBuf, server: String, policy: Policy) -> Self {
        Self {
            state_dir,
            server,
            policy,
            exec_timeout: DEFAULT_EXEC_TIMEOUT,
            ca_cert: None,
            client_identity: None,
            socket: None,
            socket_group: None,
        }
    }

    /// Where the control socket listens: `socket`, else `state_dir/agent.sock`.
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| crate::control::socket_path(&self.state_dir))
    }
}

/// `$XDG_STATE_HOME/assent-agent`, else `$HOME/.local/state/assent-agent`.
pub fn default_state_dir() -> Option<PathBuf> {
    let from_env = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    if let Some(state_home) = from_env("XDG_STATE_HOME") {
        return Some(state_home.join("assent-agent"));
    }
    from_env("HOME").map(|home| home.join(".local/state/assent-agent"))
}

/// The host name (from `/etc/hostname`, else `$HOSTNAME`), cut to 64
/// characters; `assent-agent` when neither is available.
pub fn default_device_name() -> String {
    let from_file = std::fs::read_to_string("/etc/hostname").ok();
    let from_env = || std::env::var("HOSTNAME").ok();
    let name = [from_file, from_env()]
        .into_iter()
        .flatten()
        .map(|name| name.trim().to_owned())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| FALLBACK_DEVICE_NAME.to_owned());
    name.chars().take(MAX_DEVICE_NAME_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_uses_the_default_exec_timeout_and_no_ca() {
        let config = AgentConfig::new("/s".into(), DEFAULT_SERVER.into(), Policy::Deny);
        assert_eq!(config.exec_timeout, DEFAULT_EXEC_TIMEOUT);
        assert!(config.ca_cert.is_none());
        assert_eq!(config.socket_path(), PathBuf::from("/s/agent.sock"));
        assert!(config.socket_group.is_none());
    }

    #[test]
    fn default_device_name_is_never_empty_nor_too_long() {
        let name = default_device_name();
        assert!(!name.is_empty());
        assert!(name.chars().count() <= MAX_DEVICE_NAME_CHARS);
    }
}
