//! `assent-server app webhook …`: an application's Standard Webhooks
//! endpoints (docs/webhooks.md).

use anyhow::Context as _;
use assent_server::domain::ApplicationId;
use assent_server::domain::webhook::WebhookId;
use assent_server::service::webhooks;
use assent_server::store::WebhookRecord;
use assent_server::{ServerConfig, open_store};

use crate::args::WebhookCommand;
use crate::time;

fn parse_app(text: &str) -> anyhow::Result<ApplicationId> {
    ApplicationId::parse(text).context("--app takes an application id (see `app list`)")
}

fn parse_id(text: &str) -> anyhow::Result<WebhookId> {
    WebhookId::parse(text).context("--id takes a webhook id (see `app webhook list`)")
}

fn state(record: &WebhookRecord) -> String {
    match &record.paused {
        Some((at, reason)) => format!("paused {} ({reason})", time(*at)),
        None if record.failures > 0 => format!("retrying ({} failures)", record.failures),
        None => "active".to_owned(),
    }
}

fn json(record: &WebhookRecord) -> serde_json::Value {
    serde_json::json!({
        "webhook_id": record.id.to_string(),
        "app_id": record.application_id.to_string(),
        "url": record.url.as_str(),
        "delivered_through": record.delivered_through,
        "failures": record.failures,
        "failing_since": record.failing_since.map(time),
        "next_attempt_at": time(record.next_attempt_at),
        "paused": record.paused.is_some(),
        "paused_at": record.paused.as_ref().map(|(at, _)| time(*at)),
        "pause_reason": record.paused.as_ref().map(|(_, reason)| reason),
        "created_at": time(record.created_at),
    })
}

/// Runs one `app webhook` command.
pub async fn command(config: &ServerConfig, command: WebhookCommand) -> anyhow::Result<()> {
    let store = open_store(config).await?.store;
    let store = store.as_ref();
    match command {
        WebhookCommand::Create { app, url, json } => {
            let app = parse_app(&app)?;
            let allow = config.webhook_allow_private;
            let (id, secret) = webhooks::create_webhook(store, app, &url, allow).await?;
            if json {
                let out = serde_json::json!({"webhook_id": id.to_string(), "app_id": app.to_string(), "url": url, "secret": secret.expose()});
                println!("{out}");
            } else {
                println!("Created webhook {id} of application {app} → {url}");
                println!(
                    "Signing secret (shown only now; give it to the receiver):\n  {}",
                    secret.expose()
                );
            }
        }
        WebhookCommand::List { app, json: as_json } => {
            let records = webhooks::list_webhooks(store, parse_app(&app)?).await?;
            if as_json {
                let out: Vec<_> = records.iter().map(json).collect();
                println!("{}", serde_json::Value::Array(out));
            } else {
                println!(
                    "{:<39}  {:>8}  {:<40}  URL",
                    "WEBHOOK ID", "CURSOR", "STATE"
                );
                for record in &records {
                    println!(
                        "{:<39}  {:>8}  {:<40}  {}",
                        record.id.to_string(),
                        record.delivered_through,
                        state(record),
                        record.url.as_str()
                    );
                }
            }
        }
        WebhookCommand::Pause { app, id, json } => {
            let (app, id) = (parse_app(&app)?, parse_id(&id)?);
            webhooks::pause_webhook(store, app, id).await?;
            print_done(json, app, id, "paused");
        }
        WebhookCommand::Resume { app, id, json } => {
            let (app, id) = (parse_app(&app)?, parse_id(&id)?);
            webhooks::resume_webhook(store, app, id).await?;
            print_done(json, app, id, "resumed");
        }
        WebhookCommand::Delete { app, id, json } => {
            let (app, id) = (parse_app(&app)?, parse_id(&id)?);
            webhooks::delete_webhook(store, app, id).await?;
            print_done(json, app, id, "deleted");
        }
        WebhookCommand::Rotate { app, id, json } => {
            let (app, id) = (parse_app(&app)?, parse_id(&id)?);
            let secret = webhooks::rotate_webhook_secret(store, app, id).await?;
            if json {
                let out = serde_json::json!({"webhook_id": id.to_string(), "app_id": app.to_string(), "secret": secret.expose()});
                println!("{out}");
            } else {
                println!("New signing secret of webhook {id} (the old one also signs for 24 h):");
                println!("  {}", secret.expose());
            }
        }
        WebhookCommand::Log {
            app,
            id,
            limit,
            json,
        } => {
            let (app, id) = (parse_app(&app)?, parse_id(&id)?);
            let limit = i64::from(limit.min(100));
            let attempts = webhooks::webhook_log(store, app, id, limit).await?;
            if json {
                let out: Vec<_> = attempts
                    .iter()
                    .map(|a| serde_json::json!({"attempted_at": time(a.attempted_at), "event_id": a.event_id, "status": a.status, "error": a.error, "latency_ms": a.latency_ms}))
                    .collect();
                println!("{}", serde_json::Value::Array(out));
            } else {
                println!(
                    "{:<20}  {:<50}  {:>6}  {:>8}  ERROR",
                    "ATTEMPTED", "EVENT ID", "STATUS", "MS"
                );
                for a in attempts {
                    let status = a.status.map_or_else(|| "-".to_owned(), |s| s.to_string());
                    println!(
                        "{:<20}  {:<50}  {status:>6}  {:>8}  {}",
                        time(a.attempted_at),
                        a.event_id,
                        a.latency_ms,
                        a.error.unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(())
}

fn print_done(json: bool, app: ApplicationId, id: WebhookId, what: &str) {
    if json {
        let out = serde_json::json!({"webhook_id": id.to_string(), "app_id": app.to_string(), what: true});
        println!("{out}");
    } else {
        println!("Webhook {id} of application {app} {what}");
    }
}
