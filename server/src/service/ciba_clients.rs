//! Configuring an application as a CIBA client (`assent-server app ciba`):
//! its delivery mode, notification endpoint and ID-token algorithm, the
//! endpoint held to the webhook destination rules (https beyond loopback,
//! no private address unless the operator allows it).

use super::webhooks::{WebhookError, resolve};
use crate::domain::ciba::{DeliveryMode, IdTokenAlg};
use crate::domain::webhook::{WebhookUrl, is_global};
use crate::domain::{ApplicationId, Clock as _, SystemClock};
use crate::store::{CibaClient, Store, StoreError};

/// Why a CIBA client configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum CibaClientError {
    /// Ping and push need somewhere to notify.
    #[error("--mode {0} needs --notification-endpoint URL")]
    MissingEndpoint(&'static str),
    /// Poll mode notifies nobody.
    #[error("--mode poll takes no --notification-endpoint")]
    UnusedEndpoint,
    /// The endpoint's scheme, host or address is refused.
    #[error("notification endpoint refused: {0}")]
    Endpoint(String),
    /// No application has this id.
    #[error("no application {0}; `assent-server app list` shows them")]
    NoSuchApplication(ApplicationId),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stores `app`'s CIBA settings, after checking the notification endpoint
/// (resolved now; private destinations only with `allow_private`).
pub async fn configure_ciba_client(
    store: &dyn Store,
    app: ApplicationId,
    mode: DeliveryMode,
    notification_endpoint: Option<&str>,
    id_token_alg: IdTokenAlg,
    allow_private: bool,
) -> Result<CibaClient, CibaClientError> {
    let endpoint = match (mode.is_notified(), notification_endpoint) {
        (true, None) => return Err(CibaClientError::MissingEndpoint(mode.as_str())),
        (false, Some(_)) => return Err(CibaClientError::UnusedEndpoint),
        (false, None) => None,
        (true, Some(text)) => Some(checked_endpoint(text, allow_private).await?),
    };
    let apps = store.list_applications().await?;
    if !apps.iter().any(|a| a.id == app) {
        return Err(CibaClientError::NoSuchApplication(app));
    }
    let client = CibaClient {
        application_id: app,
        mode,
        notification_endpoint: endpoint,
        id_token_alg,
    };
    store.set_ciba_client(&client, SystemClock.now()).await?;
    Ok(client)
}

/// The endpoint's text once its scheme, host and addresses pass.
async fn checked_endpoint(text: &str, allow_private: bool) -> Result<String, CibaClientError> {
    let url = WebhookUrl::parse(text).map_err(|e| CibaClientError::Endpoint(e.to_string()))?;
    let addresses = resolve(&url).await.map_err(|e| match e {
        WebhookError::Store(error) => CibaClientError::Store(error),
        other => CibaClientError::Endpoint(other.to_string()),
    })?;
    if let Some(ip) = addresses.iter().find(|ip| !is_global(**ip))
        && !allow_private
    {
        return Err(CibaClientError::Endpoint(format!(
            "{} resolves to {ip}, a private, loopback, link-local or otherwise non-global \
             address; set oidc_allow_private = true to allow such destinations",
            url.host()
        )));
    }
    Ok(url.as_str().to_owned())
}
