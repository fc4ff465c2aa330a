//! Operator actions behind `assent-server app webhook …`: create (the URL
//! checked, its addresses too), list, pause, resume, rotate the secret,
//! delete, read the delivery log.

use std::net::IpAddr;

use crate::domain::webhook::{
    self, NonGlobalAddress, ROTATION_GRACE, WebhookId, WebhookSecret, WebhookUrl,
};
use crate::domain::{ApplicationId, Clock as _, InputError, SystemClock, secure_rng};
use crate::store::{DeliveryAttempt, Store, StoreError, WebhookRecord};

/// Why a webhook action failed.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL is not acceptable.
    #[error("{0}")]
    BadInput(#[from] InputError),
    /// The destination resolves to an address that is not allowed.
    #[error(transparent)]
    NonGlobal(#[from] NonGlobalAddress),
    /// The host name does not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Unresolvable {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
    /// No application has this id.
    #[error("no application {0}; `assent-server app list` shows them")]
    NoSuchApplication(ApplicationId),
    /// The application has no such endpoint.
    #[error(
        "application {0} has no webhook {1}; `assent-server app webhook list --app {0}` shows them"
    )]
    NoSuchWebhook(ApplicationId, WebhookId),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The addresses `url`'s host resolves to now.
pub async fn resolve(url: &WebhookUrl) -> Result<Vec<IpAddr>, WebhookError> {
    let host = url.host();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let unresolvable = |reason: String| WebhookError::Unresolvable {
        host: host.clone(),
        reason,
    };
    let found = tokio::net::lookup_host((host.as_str(), url.port()))
        .await
        .map_err(|e| unresolvable(e.to_string()))?;
    let addresses: Vec<IpAddr> = found.map(|a| a.ip()).collect();
    if addresses.is_empty() {
        return Err(unresolvable("no address".to_owned()));
    }
    Ok(addresses)
}

/// Creates an endpoint for `app` that receives the events committed from
/// now on; returns it with its secret (shown once to the operator).
pub async fn create_webhook(
    store: &dyn Store,
    app: ApplicationId,
    url: &str,
    allow_private: bool,
) -> Result<(WebhookId, WebhookSecret), WebhookError> {
    let url = WebhookUrl::parse(url)?;
    let addresses = resolve(&url).await?;
    webhook::check_addresses(&url.host(), &addresses, allow_private)?;
    let apps = store.list_applications().await?;
    if !apps.iter().any(|a| a.id == app) {
        return Err(WebhookError::NoSuchApplication(app));
    }
    // `start`, not `newest`: an older transaction still committing gets a
    // cursor after it, so nothing committed from now on is skipped.
    let after = store.event_head(app).await?.start;
    let id = WebhookId::random();
    let secret = WebhookSecret::generate(&mut secure_rng());
    store
        .create_webhook(id, app, &url, &secret, after, SystemClock.now())
        .await?;
    Ok((id, secret))
}

/// The application's endpoints.
pub async fn list_webhooks(
    store: &dyn Store,
    app: ApplicationId,
) -> Result<Vec<WebhookRecord>, WebhookError> {
    Ok(store.list_webhooks(app).await?)
}

/// Pauses an endpoint (deliveries stop; its position is kept).
pub async fn pause_webhook(
    store: &dyn Store,
    app: ApplicationId,
    id: WebhookId,
) -> Result<(), WebhookError> {
    let found = store
        .set_webhook_paused(app, id, Some("paused by the operator"), SystemClock.now())
        .await?;
    found
        .then_some(())
        .ok_or(WebhookError::NoSuchWebhook(app, id))
}

/// Resumes an endpoint from its position, its failures forgotten.
pub async fn resume_webhook(
    store: &dyn Store,
    app: ApplicationId,
    id: WebhookId,
) -> Result<(), WebhookError> {
    let found = store
        .set_webhook_paused(app, id, None, SystemClock.now())
        .await?;
    found
        .then_some(())
        .ok_or(WebhookError::NoSuchWebhook(app, id))
}

/// Deletes an endpoint and its log.
pub async fn delete_webhook(
    store: &dyn Store,
    app: ApplicationId,
    id: WebhookId,
) -> Result<(), WebhookError> {
    let found = store.delete_webhook(app, id).await?;
    found
        .then_some(())
        .ok_or(WebhookError::NoSuchWebhook(app, id))
}

/// Gives an endpoint a new secret; the old one also signs for
/// [`ROTATION_GRACE`], so receivers can switch without losing a delivery.
pub async fn rotate_webhook_secret(
    store: &dyn Store,
    app: ApplicationId,
    id: WebhookId,
) -> Result<WebhookSecret, WebhookError> {
    let secret = WebhookSecret::generate(&mut secure_rng());
    let until = SystemClock.now() + ROTATION_GRACE;
    let found = store.rotate_webhook_secret(app, id, &secret, until).await?;
    if !found {
        return Err(WebhookError::NoSuchWebhook(app, id));
    }
    Ok(secret)
}

/// The endpoint's newest delivery attempts, newest first.
pub async fn webhook_log(
    store: &dyn Store,
    app: ApplicationId,
    id: WebhookId,
    limit: i64,
) -> Result<Vec<DeliveryAttempt>, WebhookError> {
    Ok(store.webhook_log(app, id, limit).await?)
}
