//! Where a device's private key lives. The SDK keeps the 32-byte Ed25519
//! seed behind [`KeyStore`]: by default a file in the state directory
//! ([`FileKeyStore`]: `device.key`, 0600, written atomically); a host app
//! supplies its platform's store (a keychain, a TPM-backed keystore, a
//! hardware token) instead. The public facts of the enrollment stay in the
//! state directory either way.

use std::fmt;
use std::path::PathBuf;

/// Why a key store failed, in words for the person or log reading it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyStoreError(pub String);

/// A place for device keys, one per enrollment (named by the device id the
/// server assigned).
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use assent_device::key_store::{KeyStore, KeyStoreError};
///
/// /// Keys in memory (a stand-in for a platform keychain).
/// #[derive(Debug, Default)]
/// struct InMemory(Mutex<HashMap<String, [u8; 32]>>);
///
/// impl KeyStore for InMemory {
///     fn store(&self, device_id: &str, seed: &[u8; 32]) -> Result<(), KeyStoreError> {
///         self.0.lock().map_err(|_| KeyStoreError("poisoned".into()))?.insert(device_id.into(), *seed);
///         Ok(())
///     }
///     fn load(&self, device_id: &str) -> Result<Option<[u8; 32]>, KeyStoreError> {
///         Ok(self.0.lock().map_err(|_| KeyStoreError("poisoned".into()))?.get(device_id).copied())
///     }
///     fn delete(&self, device_id: &str) -> Result<(), KeyStoreError> {
///         self.0.lock().map_err(|_| KeyStoreError("poisoned".into()))?.remove(device_id);
///         Ok(())
///     }
/// }
///
/// let store = InMemory::default();
/// store.store("dev-1", &[7; 32]).unwrap();
/// assert_eq!(store.load("dev-1").unwrap(), Some([7; 32]));
/// ```
pub trait KeyStore: fmt::Debug + Send + Sync + 'static {
    /// Keeps `seed` for `device_id`, replacing any; it must survive a crash
    /// once this returns.
    fn store(&self, device_id: &str, seed: &[u8; 32]) -> Result<(), KeyStoreError>;
    /// The seed kept for `device_id`, if any.
    fn load(&self, device_id: &str) -> Result<Option<[u8; 32]>, KeyStoreError>;
    /// Forgets the seed of `device_id` (nothing to do when there is none).
    fn delete(&self, device_id: &str) -> Result<(), KeyStoreError>;
}

/// The default store: `device.key` in the enrollment's state directory
/// (base64 of the seed, mode 0600, written atomically).
#[derive(Debug, Clone)]
pub struct FileKeyStore {
    dir: PathBuf,
}

impl FileKeyStore {
    /// The store of the enrollment in `state_dir`.
    pub fn new(state_dir: PathBuf) -> Self {
        Self { dir: state_dir }
    }
}

impl KeyStore for FileKeyStore {
    fn store(&self, _device_id: &str, seed: &[u8; 32]) -> Result<(), KeyStoreError> {
        crate::credentials::write_key_file(&self.dir, seed)
            .map_err(|error| KeyStoreError(error.to_string()))
    }

    fn load(&self, _device_id: &str) -> Result<Option<[u8; 32]>, KeyStoreError> {
        crate::credentials::read_key_file(&self.dir)
            .map_err(|error| KeyStoreError(error.to_string()))
    }

    fn delete(&self, _device_id: &str) -> Result<(), KeyStoreError> {
        crate::credentials::remove_key_file(&self.dir)
            .map_err(|error| KeyStoreError(error.to_string()))
    }
}
