//! The enrollment on disk: `device.json` (ids, names, server) in a state
//! directory created with mode 0700, and the key in the configured
//! [`crate::key_store::KeyStore`] — by default `device.key` (base64 of the
//! 32-byte Ed25519 seed) beside it. Files are written atomically, mode 0600.

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::key_store::KeyStore;

/// File holding the private key seed.
const KEY_FILE: &str = "device.key";
/// File holding the enrollment's public facts.
const PROFILE_FILE: &str = "device.json";

/// The public facts of an enrollment, as stored in `device.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceProfile {
    /// The device id the server assigned.
    pub device_id: String,
    /// The user the device belongs to.
    pub user_id: String,
    /// The application the device is enrolled with.
    pub application_id: String,
    /// The application's display name.
    pub application_name: String,
    /// The server URL used for the enrollment.
    pub server: String,
    /// The device's Ed25519 public key, standard base64.
    pub public_key: String,
    /// When the enrollment happened.
    pub enrolled_at: DateTime<Utc>,
}

/// The device's private key; its `Debug` never shows key material.
#[derive(Clone)]
pub(crate) struct DeviceKey(pub(crate) SigningKey);

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceKey(<redacted>)")
    }
}

impl DeviceKey {
    /// The public key in the encoding `device.json` uses.
    pub(crate) fn public_key_base64(&self) -> String {
        STANDARD.encode(self.0.verifying_key().as_bytes())
    }
}

/// File that records that the server revoked this enrollment.
const REVOKED_FILE: &str = "revoked";

/// Records that the server revoked this enrollment (what it said), so
/// `status` can tell after the daemon stopped.
pub(crate) fn mark_revoked(state_dir: &Path, message: &str) {
    if let Err(error) = std::fs::write(state_dir.join(REVOKED_FILE), message) {
        tracing::warn!(%error, "cannot record the revocation");
    }
}

/// What the server said when it revoked this enrollment, if it did.
pub fn revoked(state_dir: &Path) -> Option<String> {
    std::fs::read_to_string(state_dir.join(REVOKED_FILE)).ok()
}

/// Forgets a revocation (a new enrollment replaces the revoked one).
pub(crate) fn clear_revoked(state_dir: &Path) {
    let _ = std::fs::remove_file(state_dir.join(REVOKED_FILE));
}

/// True when either enrollment file exists, so nothing would be overwritten
/// by accident.
pub(crate) fn is_enrolled(state_dir: &Path) -> bool {
    state_dir.join(PROFILE_FILE).exists() || state_dir.join(KEY_FILE).exists()
}

/// Reads `device.json`; `None` when the directory holds no enrollment.
pub fn load_profile(state_dir: &Path) -> Result<Option<DeviceProfile>, Error> {
    let path = state_dir.join(PROFILE_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::Storage { path, source }),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|error| Error::CorruptProfile {
            path,
            detail: error.to_string(),
        })
}

/// Reads the enrollment and its key from `keys`, checking that they belong
/// together.
pub(crate) fn load(
    state_dir: &Path,
    keys: &dyn KeyStore,
) -> Result<(DeviceProfile, DeviceKey), Error> {
    let profile = load_profile(state_dir)?.ok_or_else(|| Error::NotEnrolled {
        state_dir: state_dir.to_owned(),
    })?;
    let corrupt = |detail: &str| Error::CorruptProfile {
        path: state_dir.join(KEY_FILE),
        detail: detail.to_owned(),
    };
    let seed = keys
        .load(&profile.device_id)
        .map_err(|error| Error::KeyStore(error.0))?
        .ok_or_else(|| corrupt("the key store holds no key for this enrollment"))?;
    let key = DeviceKey(SigningKey::from_bytes(&seed));
    if key.public_key_base64() != profile.public_key {
        return Err(corrupt(
            "the key does not match the public key in device.json",
        ));
    }
    Ok((profile, key))
}

/// Reads `device.key`; `None` when there is none.
pub(crate) fn read_key_file(state_dir: &Path) -> Result<Option<[u8; 32]>, Error> {
    let path = state_dir.join(KEY_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::Storage { path, source }),
    };
    let corrupt = |detail: &str| Error::CorruptProfile {
        path: path.clone(),
        detail: detail.to_owned(),
    };
    let seed: [u8; 32] = STANDARD
        .decode(text.trim())
        .map_err(|_| corrupt("not base64"))?
        .try_into()
        .map_err(|_| corrupt("not a 32-byte key"))?;
    Ok(Some(seed))
}

/// Writes `device.key` atomically, mode 0600.
pub(crate) fn write_key_file(state_dir: &Path, seed: &[u8; 32]) -> Result<(), Error> {
    create_state_dir(state_dir)?;
    let text = format!("{}\n", STANDARD.encode(seed));
    write_atomically(state_dir, KEY_FILE, text.as_bytes())
}

/// Deletes `device.key` (nothing to do when there is none).
pub(crate) fn remove_key_file(state_dir: &Path) -> Result<(), Error> {
    remove_files(state_dir, &[KEY_FILE])
}

/// Writes the key, then the profile (whose presence marks the enrollment).
pub(crate) fn save(
    state_dir: &Path,
    keys: &dyn KeyStore,
    key: &DeviceKey,
    profile: &DeviceProfile,
) -> Result<(), Error> {
    create_state_dir(state_dir)?;
    keys.store(&profile.device_id, &key.0.to_bytes())
        .map_err(|error| Error::KeyStore(error.0))?;
    let mut json = serde_json::to_vec_pretty(profile).map_err(|error| Error::CorruptProfile {
        path: state_dir.join(PROFILE_FILE),
        detail: error.to_string(),
    })?;
    json.push(b'\n');
    write_atomically(state_dir, PROFILE_FILE, &json)
}

/// Deletes the enrollment: the profile first (so a half-done removal reads
/// as not enrolled), then the key and the revocation record.
pub(crate) fn remove(state_dir: &Path, keys: &dyn KeyStore) -> Result<(), Error> {
    let profile = load_profile(state_dir)?;
    remove_files(state_dir, &[PROFILE_FILE])?;
    if let Some(profile) = profile {
        keys.delete(&profile.device_id)
            .map_err(|error| Error::KeyStore(error.0))?;
    }
    remove_files(state_dir, &[KEY_FILE, REVOKED_FILE])
}

/// Deletes the named files of `state_dir` that exist.
fn remove_files(state_dir: &Path, files: &[&str]) -> Result<(), Error> {
    for file in files {
        let path = state_dir.join(file);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Storage { path, source }),
        }
    }
    Ok(())
}

/// Creates the state directory (and missing parents) with mode 0700.
pub(crate) fn create_state_dir(state_dir: &Path) -> Result<(), Error> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(|source| Error::Storage {
            path: state_dir.to_owned(),
            source,
        })
}

/// Replaces `dir/name` so that a crash leaves either the old or the new file,
/// never a torn one, and the content is never readable by others.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    let target = dir.join(name);
    let temp = dir.join(format!(".{name}.{}.tmp", rand::random::<u64>()));
    let storage = |path: &PathBuf| {
        let path = path.clone();
        move |source| Error::Storage { path, source }
    };
    let written = (|| -> io::Result<()> {
        // Created with 0600 from the start: chmod after the write would leave
        // a window in which the key is readable.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(error) = written {
        let _ = fs::remove_file(&temp);
        return Err(storage(&temp)(error));
    }
    fs::rename(&temp, &target).map_err(|error| {
        let _ = fs::remove_file(&temp);
        storage(&target)(error)
    })?;
    // The rename is durable only once the directory entry is flushed.
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(storage(&dir.to_owned()))
}

#[cfg(test)]
mod tests {
    use crate::key_store::FileKeyStore;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn sample(key: &DeviceKey) -> DeviceProfile {
        DeviceProfile {
            device_id: "dev-1".into(),
            user_id: "alice".into(),
            application_id: "app-1".into(),
            application_name: "Example Shop".into(),
            server: "http://127.0.0.1:50051".into(),
            public_key: key.public_key_base64(),
            enrolled_at: Utc::now(),
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn saved_credentials_are_private_and_read_back() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("nested/state");
        let key = DeviceKey(SigningKey::from_bytes(&[9; 32]));
        let profile = sample(&key);
        save(&dir, &FileKeyStore::new(dir.clone()), &key, &profile).unwrap();

        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&dir.join(PROFILE_FILE)), 0o600);
        let (loaded, loaded_key) = load(&dir, &FileKeyStore::new(dir.clone())).unwrap();
        assert_eq!(loaded, profile);
        assert_eq!(loaded_key.0.to_bytes(), [9; 32]);
        let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 2, "no temporary files remain");
    }

    #[test]
    fn missing_enrollment_is_not_enrolled() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_enrolled(dir.path()));
        let keys = FileKeyStore::new(dir.path().to_owned());
        assert!(matches!(
            load(dir.path(), &keys),
            Err(Error::NotEnrolled { .. })
        ));
        assert!(load_profile(dir.path()).unwrap().is_none());
    }

    #[test]
    fn a_key_that_does_not_match_the_profile_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = DeviceKey(SigningKey::from_bytes(&[1; 32]));
        let other = DeviceKey(SigningKey::from_bytes(&[2; 32]));
        let keys = FileKeyStore::new(dir.path().to_owned());
        save(dir.path(), &keys, &key, &sample(&other)).unwrap();
        assert!(is_enrolled(dir.path()));
        assert!(matches!(
            load(dir.path(), &keys),
            Err(Error::CorruptProfile { .. })
        ));
    }

    #[test]
    fn debug_hides_the_key() {
        let key = DeviceKey(SigningKey::from_bytes(&[3; 32]));
        assert_eq!(format!("{key:?}"), "DeviceKey(<redacted>)");
    }
}
