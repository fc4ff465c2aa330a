//! Where a device lives and which servers it talks to.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::key_store::{FileKeyStore, KeyStore};

/// Server used when nothing else names one.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";
/// Longest device name the server accepts, in characters.
pub const MAX_DEVICE_NAME_CHARS: usize = 64;

/// One enrollment's settings: its directory (profile, and by default the
/// key; written atomically, owner-only), the servers to connect to, and
/// where the private key is kept.
#[derive(Clone)]
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
    /// PEM files of the certificate and key this device presents when the
    /// server asks for one (mutual TLS, `https://` only).
    pub client_identity: Option<ClientIdentity>,
    /// Where the private key is kept; `None`: `device.key` in `state_dir`
    /// ([`FileKeyStore`]).
    pub key_store: Option<Arc<dyn KeyStore>>,
}

/// A TLS client certificate and its private key, PEM files (the key is
/// read when a connection is made, never kept in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The certificate (chain), PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
}

impl fmt::Debug for DeviceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceConfig")
            .field("state_dir", &self.state_dir)
            .field("server", &self.server)
            .field("ca_cert", &self.ca_cert)
            .field("client_identity", &self.client_identity)
            .field("key_store", &self.key_store)
            .finish()
    }
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
            client_identity: None,
            key_store: None,
        }
    }

    /// The same settings with the key kept in `store`.
    pub fn with_key_store(mut self, store: Arc<dyn KeyStore>) -> Self {
        self.key_store = Some(store);
        self
    }

    /// The key store in force.
    pub(crate) fn keys(&self) -> Arc<dyn KeyStore> {
        self.key_store
            .clone()
            .unwrap_or_else(|| Arc::new(FileKeyStore::new(self.state_dir.clone())))
    }
}
