//! Enrollments a device holds: listed under one directory, forgotten on the
//! device only, or revoked on the server too.

use std::path::{Path, PathBuf};

use assent_proto::v1::{Unenroll, agent_message};

use crate::client::is_revocation;
use crate::config::DeviceConfig;
use crate::connection::{self, ConnectError};
use crate::credentials::{self, DeviceProfile};
use crate::error::Error;
use crate::identity::Identity;

/// The enrollments in the subdirectories of `root` (one directory per
/// enrollment, as an app that holds several keeps them), in name order.
///
/// ```
/// let root = std::env::temp_dir().join("assent-doc-no-enrollments");
/// assert!(assent_device::enrollments(&root).unwrap().is_empty());
/// ```
pub fn enrollments(root: &Path) -> Result<Vec<(PathBuf, DeviceProfile)>, Error> {
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Storage {
                path: root.to_owned(),
                source,
            });
        }
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        if dir.is_dir()
            && let Some(profile) = credentials::load_profile(&dir)?
        {
            found.push((dir, profile));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// Forgets the enrollment on this device only: its key (from its key
/// store) and profile are deleted; the server still lists the device (the
/// application may revoke it). A directory without an enrollment is left
/// as it is.
pub fn forget(config: &DeviceConfig) -> Result<(), Error> {
    credentials::remove(&config.state_dir, config.keys().as_ref())
}

/// Revokes this device on the server — asked on its authenticated stream,
/// so only the key holder can — then forgets it locally. The relying party
/// sees `device.revoked`; logins it held fail with `device_revoked`. A
/// device the server already revoked is forgotten too.
pub async fn unenroll(config: &DeviceConfig) -> Result<(), Error> {
    let (profile, key) = credentials::load(&config.state_dir, config.keys().as_ref())?;
    let endpoints = connection::endpoints(&config.server, connection::TlsFiles::of(config))?;
    let identity = Identity::new(profile.device_id.clone(), key);
    let mut last = None;
    for endpoint in endpoints {
        match revoke_on(endpoint, identity.clone()).await {
            Ok(()) => {
                tracing::info!(device_id = %profile.device_id, "unenrolled");
                return forget(config);
            }
            Err(error @ Error::EnrollmentRefused { .. }) => return Err(error),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| Error::ServerUnreachable {
        server: config.server.clone(),
        detail: "no server to ask".to_owned(),
    }))
}

/// Asks one server; `Ok` once it says this device is revoked.
async fn revoke_on(endpoint: tonic::transport::Endpoint, identity: Identity) -> Result<(), Error> {
    let server = endpoint.uri().to_string();
    let mut session = match connection::establish(endpoint, identity).await {
        Ok(session) => session,
        Err(ConnectError::Refused(status)) if is_revocation(&status) => return Ok(()),
        Err(ConnectError::Refused(status)) => {
            return Err(Error::EnrollmentRefused {
                code: status.code(),
                message: status.message().to_owned(),
            });
        }
        Err(ConnectError::Unavailable(detail)) => {
            return Err(Error::ServerUnreachable { server, detail });
        }
    };
    session
        .sender
        .send(agent_message::Body::Unenroll(Unenroll {}))
        .await;
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match session.inbound.message().await {
                // Re-sent confirmations and the like: the end comes next.
                Ok(Some(_)) => {}
                Ok(None) => return Err("the server ended the stream without revoking".to_owned()),
                Err(status) => return Ok(status),
            }
        }
    })
    .await;
    match ended {
        Ok(Ok(status)) if is_revocation(&status) => Ok(()),
        Ok(Ok(status)) => Err(Error::EnrollmentRefused {
            code: status.code(),
            message: status.message().to_owned(),
        }),
        Ok(Err(detail)) => Err(Error::ServerUnreachable { server, detail }),
        Err(_) => Err(Error::ServerUnreachable {
            server,
            detail: "no answer to the unenrollment within 10 s".to_owned(),
        }),
    }
}
