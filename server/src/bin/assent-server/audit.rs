//! `assent-server audit verify`: recomputes the tamper-evident record.

use std::sync::Arc;

use anyhow::Context as _;
use assent_server::domain::ApplicationId;
use assent_server::{ServerConfig, open_store};

/// Verifies one application's record, or every application's.
pub async fn verify(
    config: &ServerConfig,
    application: Option<&str>,
    seal: bool,
    json: bool,
) -> anyhow::Result<()> {
    use assent_server::service::{Finding, Services};
    let store = open_store(config).await?.store;
    let services = Services::new(
        Arc::clone(&store),
        assent_server::notify::Notifier::new(),
        Arc::new(assent_server::domain::SystemClock),
        config.limits(),
    );
    let apps = match application {
        Some(text) => vec![
            ApplicationId::parse(text)
                .context("--application takes an application id (see `app list`)")?,
        ],
        None => store
            .list_applications()
            .await?
            .into_iter()
            .map(|a| a.id)
            .collect(),
    };
    if seal {
        services.audit.seal_all().await?;
    }
    let mut failed = 0;
    for app in apps {
        let report = services.audit.verify(app).await?;
        let finding = report.finding.as_ref().map(|finding| {
            let (kind, key, value) = match finding {
                Finding::Changed { cursor } => ("changed", "cursor", *cursor),
                Finding::Removed { cursor } => ("removed", "cursor", *cursor),
                Finding::Inserted { cursor } => ("inserted", "cursor", *cursor),
                Finding::Checkpoint { seq, .. } => ("checkpoint", "seq", *seq),
            };
            serde_json::json!({"kind": kind, key: value, "message": finding.to_string()})
        });
        if report.finding.is_some() {
            failed += 1;
        }
        if json {
            let out = serde_json::json!({
                "application_id": app.to_string(),
                "ok": report.finding.is_none(),
                "checkpoints": report.checkpoints,
                "events_verified": report.events_verified,
                "events_purged": report.events_purged,
                "events_unsealed": report.events_unsealed,
                "finding": finding,
            });
            println!("{out}");
        } else {
            match &report.finding {
                None => println!(
                    "{app}: ok — {} checkpoints, {} events as sealed, {} removed by retention, \
                     {} not sealed yet",
                    report.checkpoints,
                    report.events_verified,
                    report.events_purged,
                    report.events_unsealed
                ),
                Some(finding) => println!("{app}: TAMPERED — {finding}"),
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} application(s) failed the audit");
    }
    Ok(())
}
