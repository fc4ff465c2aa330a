//! `assent-server keys …`: the event-signing keys.

use assent_server::{ServerConfig, open_store};

use crate::args::ServerKeysCommand;
use crate::time;

/// Lists or rotates the event-signing keys.
pub async fn server_keys_command(
    config: &ServerConfig,
    command: ServerKeysCommand,
) -> anyhow::Result<()> {
    let store = open_store(config).await?.store;
    let hex = |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    match command {
        ServerKeysCommand::List { json } => {
            let keys = store.server_keys().await?;
            if json {
                let out: Vec<_> = keys
                    .iter()
                    .map(|k| serde_json::json!({"key_id": k.id, "public_key": hex(&k.public_key), "created_at": time(k.created_at), "retired_at": k.retired_at.map(time)}))
                    .collect();
                println!("{}", serde_json::Value::Array(out));
            } else if keys.is_empty() {
                println!("no signing key yet (the server makes one on its first start)");
            } else {
                for key in keys {
                    let state = key
                        .retired_at
                        .map_or_else(|| "current".to_owned(), |t| format!("retired {}", time(t)));
                    println!("{}  {}  {state}", key.id, time(key.created_at));
                }
            }
        }
        ServerKeysCommand::Rotate { json } => {
            let mut rng = assent_server::secure_rng();
            let key = assent_server::service::signer::rotate(
                store.as_ref(),
                &mut rng,
                assent_server::domain::Clock::now(&assent_server::domain::SystemClock),
            )
            .await?;
            if json {
                let out = serde_json::json!({"key_id": key.id, "public_key": hex(&key.public_key)});
                println!("{out}");
            } else {
                println!("Key {} is now current; replicas switch within 30 s", key.id);
            }
        }
    }
    Ok(())
}
