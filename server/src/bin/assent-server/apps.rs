//! `assent-server app …`: applications and their API keys.

use anyhow::Context as _;
use assent_server::domain::ApplicationId;
use assent_server::{ServerConfig, admin, open_store};

use crate::args::KeyCommand;
use crate::time;

/// `app create NAME`: a new application and its first API key.
pub async fn create(config: &ServerConfig, name: &str, json: bool) -> anyhow::Result<()> {
    let store = open_store(config).await?.store;
    let (app, key) = admin::create_application(store.as_ref(), name).await?;
    if json {
        let key_id = admin::key_id(&key)
            .map(|id| id.to_string())
            .unwrap_or_default();
        let out = serde_json::json!({"app_id": app.id.to_string(), "key_id": key_id, "api_key": key, "name": app.name});
        println!("{out}");
    } else {
        println!("Created application \"{}\" ({})", app.name, app.id);
        println!("API key (shown only now; store it safely):\n  {key}");
        println!("Try:\n  export ASSENT_API_KEY={key}");
    }
    Ok(())
}

/// `app list`.
pub async fn list(config: &ServerConfig, json: bool) -> anyhow::Result<()> {
    let store = open_store(config).await?.store;
    let apps = store.list_applications().await?;
    if json {
        let out: Vec<_> = apps
            .iter()
            .map(|a| serde_json::json!({"app_id": a.id.to_string(), "name": a.name, "created_at": time(a.created_at)}))
            .collect();
        println!("{}", serde_json::Value::Array(out));
    } else {
        println!("{:<36}  {:<20}  NAME", "APPLICATION ID", "CREATED");
        for app in apps {
            println!("{:<36}  {:<20}  {}", app.id, time(app.created_at), app.name);
        }
    }
    Ok(())
}

/// `app key …`.
pub async fn key_command(config: &ServerConfig, command: KeyCommand) -> anyhow::Result<()> {
    let parse_app = |text: &str| {
        ApplicationId::parse(text).context("--app takes an application id (see `app list`)")
    };
    let store = open_store(config).await?.store;
    match command {
        KeyCommand::Create { app, json } => {
            let app = parse_app(&app)?;
            let (key_id, key) = admin::add_api_key(store.as_ref(), app).await?;
            if json {
                let out = serde_json::json!({"app_id": app.to_string(), "key_id": key_id.to_string(), "api_key": key});
                println!("{out}");
            } else {
                println!("Added key {key_id} to application {app}");
                println!("API key (shown only now; store it safely):\n  {key}");
            }
        }
        KeyCommand::List { app, json } => {
            let keys = store.list_api_keys(parse_app(&app)?).await?;
            if json {
                let out: Vec<_> = keys
                    .iter()
                    .map(|k| serde_json::json!({"key_id": k.id.to_string(), "created_at": time(k.created_at), "revoked_at": k.revoked_at.map(time)}))
                    .collect();
                println!("{}", serde_json::Value::Array(out));
            } else {
                println!("{:<36}  {:<20}  STATE", "KEY ID", "CREATED");
                for key in keys {
                    let state = key
                        .revoked_at
                        .map_or_else(|| "active".to_owned(), |t| format!("revoked {}", time(t)));
                    println!("{:<36}  {:<20}  {state}", key.id, time(key.created_at));
                }
            }
        }
        KeyCommand::Revoke { app, key, json } => {
            let app = parse_app(&app)?;
            let key_id = admin::key_id(&key)?;
            admin::revoke_api_key(store.as_ref(), app, key_id).await?;
            if json {
                let out = serde_json::json!({"app_id": app.to_string(), "key_id": key_id.to_string(), "revoked": true});
                println!("{out}");
            } else {
                println!("Revoked key {key_id} of application {app}");
            }
        }
    }
    Ok(())
}
