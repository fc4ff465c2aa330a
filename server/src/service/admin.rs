//! Operator actions behind `assent-server app …`.

use chrono::Utc;

use crate::domain::{ApiKey, ApiKeyId, ApplicationId, Clock, SystemClock, secure_rng};
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
    /// No application has this id.
    #[error("no application {0}; `assent-server app list` shows them")]
    NoSuchApplication(ApplicationId),
    /// The application has no such unrevoked key.
    #[error(
        "application {0} has no unrevoked key {1}; `assent-server app key list --app {0}` \
         shows its keys"
    )]
    NoSuchKey(ApplicationId, ApiKeyId),
    /// The key is neither a key id nor an API key.
    #[error("{0:?} is neither a key id (a UUID) nor an API key (ak_…)")]
    BadKey(String),
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
    let now = SystemClock.now();
    let app = Application {
        id: ApplicationId::random(),
        name,
        created_at: now,
    };
    let (key, text) = new_key(now);
    store.create_application(&app, &key).await?;
    Ok((app, text))
}

/// A fresh key: what is stored, and the text shown once.
fn new_key(now: chrono::DateTime<Utc>) -> (NewApiKey, String) {
    let key = ApiKey::generate(&mut secure_rng(), ApiKeyId::random());
    let stored = NewApiKey {
        id: key.id(),
        secret_hash: key.hash(),
        created_at: now,
    };
    (stored, key.expose())
}

/// Adds an API key to an application (for rotation: add, deploy, revoke
/// the old one). Returns its id and its text, shown only now.
pub async fn add_api_key(
    store: &dyn Store,
    app: ApplicationId,
) -> Result<(ApiKeyId, String), AdminError> {
    let (key, text) = new_key(SystemClock.now());
    if !store.add_api_key(app, &key).await? {
        return Err(AdminError::NoSuchApplication(app));
    }
    Ok((key.id, text))
}

/// Parses what an operator names a key by: its id, or the key itself.
pub fn key_id(text: &str) -> Result<ApiKeyId, AdminError> {
    ApiKeyId::parse(text)
        .or_else(|_| ApiKey::parse(text).map(|key| key.id()))
        .map_err(|_| AdminError::BadKey(text.chars().take(12).collect()))
}

/// Revokes one of the application's keys: calls with it fail at once, and
/// its event streams end.
pub async fn revoke_api_key(
    store: &dyn Store,
    app: ApplicationId,
    key: ApiKeyId,
) -> Result<(), AdminError> {
    if store.revoke_api_key(app, key, SystemClock.now()).await? {
        Ok(())
    } else {
        Err(AdminError::NoSuchKey(app, key))
    }
}
