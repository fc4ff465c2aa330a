//! Enrollment: a fresh key pair from the OS random source, the `Enroll` call
//! with its proof of possession, and the profile saved on success.

use assent_proto::signing;
use assent_proto::v1::EnrollRequest;
use assent_proto::v1::device_service_client::DeviceServiceClient;
use chrono::Utc;
use ed25519_dalek::{Signer, SigningKey};
use rand::TryRngCore;
use rand::rngs::OsRng;

use crate::config::{DeviceConfig, MAX_DEVICE_NAME_CHARS};
use crate::connection;
use crate::credentials::{self, DeviceKey, DeviceProfile};
use crate::error::Error;

/// What the server said about the new device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Enrollment {
    /// The new device's id.
    pub device_id: String,
    /// The user the device belongs to.
    pub user_id: String,
    /// The application's id.
    pub application_id: String,
    /// The application's display name.
    pub application_name: String,
}

/// Enrolls this agent with `code` under `device_name` and saves the key and
/// profile in `config.state_dir`; refuses to replace an enrollment unless
/// `force`.
pub async fn enroll(
    config: &DeviceConfig,
    code: &str,
    device_name: &str,
    force: bool,
) -> Result<Enrollment, Error> {
    if credentials::is_enrolled(&config.state_dir) && !force {
        return Err(Error::AlreadyEnrolled {
            state_dir: config.state_dir.clone(),
        });
    }
    let device_name = device_name.trim();
    if device_name.is_empty() || device_name.chars().count() > MAX_DEVICE_NAME_CHARS {
        return Err(Error::InvalidDeviceName(format!(
            "{device_name:?} must be 1 to {MAX_DEVICE_NAME_CHARS} characters"
        )));
    }
    let code = code.trim();
    let endpoints = connection::endpoints(&config.server, connection::TlsFiles::of(config))?;
    // Fail on an unwritable state directory before the code is spent.
    credentials::create_state_dir(&config.state_dir)?;

    let mut seed = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut seed)
        .map_err(|error| Error::Randomness(error.to_string()))?;
    let key = SigningKey::from_bytes(&seed);
    let public_key = key.verifying_key().to_bytes();
    let proof = key.sign(&signing::enroll_bytes(code, &public_key, device_name));

    let mut client = DeviceServiceClient::new(connection::first_channel(&endpoints).await?);
    let response = client
        .enroll(EnrollRequest {
            code: code.to_owned(),
            public_key: public_key.to_vec(),
            device_name: device_name.to_owned(),
            proof: proof.to_bytes().to_vec(),
        })
        .await
        .map_err(|status| match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown => {
                Error::ServerUnreachable {
                    server: config.server.clone(),
                    detail: status.message().to_owned(),
                }
            }
            code => Error::EnrollmentRefused {
                code,
                message: status.message().to_owned(),
            },
        })?
        .into_inner();

    let key = DeviceKey(key);
    let profile = DeviceProfile {
        device_id: response.device_id,
        user_id: response.user_id,
        application_id: response.application_id,
        application_name: response.application_name,
        server: config.server.clone(),
        public_key: key.public_key_base64(),
        enrolled_at: Utc::now(),
    };
    credentials::save(&config.state_dir, config.keys().as_ref(), &key, &profile)?;
    credentials::clear_revoked(&config.state_dir);
    tracing::info!(device_id = %profile.device_id, application = %profile.application_name, "enrolled");
    Ok(Enrollment {
        device_id: profile.device_id,
        user_id: profile.user_id,
        application_id: profile.application_id,
        application_name: profile.application_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path) -> DeviceConfig {
        // Nothing listens on port 9: a call that got that far would fail as unreachable.
        DeviceConfig::new(dir.to_owned(), "http://127.0.0.1:9")
    }

    #[tokio::test]
    async fn an_existing_enrollment_is_kept_without_force() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("device.json"), "{}").unwrap();
        let refused = enroll(&config(dir.path()), "code", "laptop", false).await;
        assert!(
            matches!(refused, Err(Error::AlreadyEnrolled { .. })),
            "{refused:?}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("device.json")).unwrap(),
            "{}"
        );
        // With --force the agent goes on to contact the server.
        let forced = enroll(&config(dir.path()), "code", "laptop", true).await;
        assert!(
            matches!(forced, Err(Error::ServerUnreachable { .. })),
            "{forced:?}"
        );
    }

    #[tokio::test]
    async fn device_names_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let long = "x".repeat(65);
        for name in ["", "   ", long.as_str()] {
            let refused = enroll(&config(dir.path()), "code", name, false).await;
            assert!(
                matches!(refused, Err(Error::InvalidDeviceName(_))),
                "{name:?}"
            );
        }
    }
}
