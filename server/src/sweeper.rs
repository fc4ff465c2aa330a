//! Background upkeep: the expiry sweeper and event retention.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::service::Services;

/// How often retention runs.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Expires overdue transactions every `interval` and purges old events every
/// minute, until `stop` fires. Errors are logged and retried next round.
pub async fn run(services: Arc<Services>, interval: Duration, stop: CancellationToken) {
    let mut sweep = tokio::time::interval(interval);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut purge = tokio::time::interval(PURGE_EVERY);
    purge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = sweep.tick() => {
                match services.upkeep.sweep().await {
                    Ok(0) => {}
                    Ok(expired) => tracing::debug!(expired, "sweeper expired transactions"),
                    Err(error) => tracing::warn!(%error, "expiry sweep failed"),
                }
            }
            _ = purge.tick() => {
                match services.upkeep.purge().await {
                    Ok(0) => {}
                    Ok(deleted) => tracing::info!(deleted, "retention removed old events"),
                    Err(error) => tracing::warn!(%error, "event retention failed"),
                }
            }
        }
    }
}
