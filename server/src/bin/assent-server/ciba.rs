//! `assent-server app ciba`: how an application, as an OpenID CIBA client,
//! gets its results (docs/ciba.md).

use anyhow::Context as _;
use assent_server::domain::ApplicationId;
use assent_server::domain::ciba::{DeliveryMode, IdTokenAlg};
use assent_server::service::ciba_clients::configure_ciba_client;
use assent_server::{ServerConfig, open_store};

/// `app ciba --app ID --mode MODE [--notification-endpoint URL] [--alg ALG]`.
pub async fn set(
    config: &ServerConfig,
    app: &str,
    mode: &str,
    notification_endpoint: Option<&str>,
    alg: &str,
    json: bool,
) -> anyhow::Result<()> {
    let app =
        ApplicationId::parse(app).context("--app takes an application id (see `app list`)")?;
    let mode = DeliveryMode::parse(mode).context("--mode takes poll, ping or push")?;
    let alg = IdTokenAlg::parse(alg).context("--alg takes RS256, EdDSA or ES256")?;
    let store = open_store(config).await?.store;
    let allow = config.oidc_allow_private;
    let client =
        configure_ciba_client(store.as_ref(), app, mode, notification_endpoint, alg, allow).await?;
    if json {
        let out = serde_json::json!({
            "app_id": app.to_string(),
            "mode": client.mode.as_str(),
            "notification_endpoint": client.notification_endpoint,
            "alg": client.id_token_alg.as_str(),
        });
        println!("{out}");
    } else {
        let to = client
            .notification_endpoint
            .as_deref()
            .map_or_else(String::new, |url| format!(", notifying {url}"));
        println!(
            "Application {app} is a CIBA {} client (ID tokens {}){to}",
            client.mode.as_str(),
            client.id_token_alg.as_str()
        );
    }
    Ok(())
}
