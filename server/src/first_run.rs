//! Zero-config first run: on an empty embedded store, create an application
//! named `default` and leave its API key in a file only the owner can read.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::service::admin::{self, AdminError};
use crate::store::Store;

/// File name of the default application's API key inside the data directory.
pub const DEFAULT_KEY_FILE: &str = "default-api-key";

/// Why the first-run setup failed.
#[derive(Debug, thiserror::Error)]
pub enum FirstRunError {
    /// Creating the application failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// Writing the key file failed.
    #[error("cannot write the API key file {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Creates the `default` application when the store has none; returns the
/// key file it wrote.
pub async fn bootstrap(store: &dyn Store, dir: &Path) -> Result<Option<PathBuf>, FirstRunError> {
    if !store
        .list_applications()
        .await
        .map_err(AdminError::from)?
        .is_empty()
    {
        return Ok(None);
    }
    let (app, key) = admin::create_application(store, "default").await?;
    let path = dir.join(DEFAULT_KEY_FILE);
    write_private(&path, format!("{key}\n").as_bytes()).map_err(|source| FirstRunError::Write {
        path: path.clone(),
        source,
    })?;
    tracing::info!(app_id = %app.id, key_file = %path.display(), "created the default application");
    Ok(Some(path))
}

/// Writes `bytes` atomically to `path` with mode 0600 (temp file, fsync, rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// What to tell a person after the first run created the default application.
pub fn banner(db: &Path, key_file: &Path) -> String {
    format!(
        "\nAssent is running on the embedded SQLite store {db}.\n\
         Created the application \"default\"; its API key is in {key} (readable only by you).\n\
         Next, in another terminal (`cargo build --release` builds `assent` and `assent-agent` \
         into target/release/):\n  \
         export ASSENT_API_KEY=$(cat {key})\n  \
         assent enrollment create --user alice\n  \
         assent-agent enroll --code <code from the line above>\n",
        db = db.display(),
        key = key_file.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_says_how_to_get_the_commands_it_names() {
        let text = banner(Path::new("/d/assent.db"), Path::new("/d/default-api-key"));
        assert_eq!(text.matches("cargo build --release").count(), 1, "{text}");
        assert!(text.contains("assent enrollment create"), "{text}");
        assert!(text.contains("assent-agent enroll"), "{text}");
    }

    #[test]
    fn private_files_are_owner_only() {
        let dir = std::env::temp_dir().join(format!("assent-first-run-{}", std::process::id()));
        assert!(std::fs::create_dir_all(&dir).is_ok());
        let path = dir.join("key");
        assert!(write_private(&path, b"secret").is_ok());
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        assert_eq!(std::fs::read(&path).ok(), Some(b"secret".to_vec()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
