//! Where a device lives and which servers it talks to.

use std::path::PathBuf;

/// Server used when nothing else names one.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";
/// Longest device name the server accepts, in characters.
pub const MAX_DEVICE_NAME_CHARS: usize = 64;

/// One enrollment's settings: its directory (key and profile, written
/// atomically, owner-only) and the servers to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Directory holding `device.key` and `device.json`.
    pub state_dir: PathBuf,
    /// The Assent server URL, or several separated by commas (`http://` or
    /// `https://`); the device starts at a random one and moves on when one
    /// fails or drains.
    pub server: String,
    /// PEM file with the CA that signed the server certificate; without it
    /// `https://` trusts the system's CA bundle.
    pub ca_cert: Option<PathBuf>,
}

impl DeviceConfig {
    /// Settings for the enrollment in `state_dir`, talking to `server`.
    ///
    /// ```
    /// let config = assent_device::DeviceConfig::new("/var/lib/kiosk/assent".into(), "https://auth.example.com");
    /// assert!(config.ca_cert.is_none());
    /// ```
    pub fn new(state_dir: PathBuf, server: impl Into<String>) -> Self {
        Self {
            state_dir,
            server: server.into(),
            ca_cert: None,
        }
    }
}
