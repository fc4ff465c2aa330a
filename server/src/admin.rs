//! Operator actions behind `assent-server app …`.

use chrono::Utc;
use rand::TryRngCore;

use crate::domain::{ApiKey, ApiKeyId, ApplicationId};
use crate::store::{Application, NewApiKey, Store, StoreError};

/// Longest application display name.
pub const MAX_APP_NAME: usize = 100;

/// Why an admin action failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The name is empty, too long or not plain text.
    #[error("application name must be 1-{MAX_APP_NAME} characters of plain text")]
    BadName,
    /// The name has a character a device may not show.
    #[error("application {0}")]
    NotPlain(#[from] crate::domain::InputError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates an application and its first API key; the key text is returned
/// once and only its hash is stored.
pub async fn create_application(
    store: &dyn Store,
    name: &str,
) -> Result<(Application, String), AdminError> {
    let name = crate::domain::text::plain("name", name.trim())?;
    if name.is_empty() || name.chars().count() > MAX_APP_NAME {
        return Err(AdminError::BadName);
    }
    let now = Utc::now();
    let app = Application {
        id: ApplicationId::random(),
        name,
        created_at: now,
    };
    let key = ApiKey::generate(&mut rand::rngs::OsRng.unwrap_err(), ApiKeyId::random());
    store
        .create_application(
            &app,
            &NewApiKey {
                id: key.id(),
                secret_hash: key.hash(),
                created_at: now,
            },
        )
        .await?;
    Ok((app, key.expose()))
}
