//! Background upkeep: the expiry sweeper, the audit chain's sealer, event
//! retention, and the clock's alignment with the database's.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::Clock;
use crate::domain::clock::DatabaseClock;
use crate::service::Services;
use crate::store::Store;

/// How often the offset to the database's clock is measured again.
pub const CLOCK_SYNC_EVERY: Duration = Duration::from_secs(30);

/// How often retention runs.
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// How often new events are sealed into the audit chain.
const SEAL_EVERY: Duration = Duration::from_secs(2);

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

/// Seals new events into the audit chain every [`SEAL_EVERY`] until `stop`
/// fires (its own task: a seal may wait for older transactions to finish).
pub async fn seal(services: Arc<Services>, stop: CancellationToken) {
    let mut seal = tokio::time::interval(SEAL_EVERY);
    seal.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = seal.tick() => {
                match services.audit.seal_all().await {
                    Ok(0) => {}
                    Ok(sealed) => tracing::debug!(sealed, "sealed events into the audit chain"),
                    Err(error) => tracing::warn!(%error, "sealing the audit chain failed"),
                }
            }
        }
    }
}

/// Renews this replica's presence lease every
/// [`crate::service::LEASE_RENEWAL`] and forgets the streams of replicas
/// whose lease ended, until `stop` fires.
pub async fn presence(services: Arc<Services>, stop: CancellationToken) {
    let mut renew = tokio::time::interval(crate::service::LEASE_RENEWAL);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = renew.tick() => {
                match services.directory.renew_presence().await {
                    Ok(0) => {}
                    Ok(gone) => tracing::info!(gone, "forgot the streams of replicas that stopped renewing"),
                    Err(error) => tracing::warn!(%error, "cannot renew the presence lease"),
                }
                let pruned = services.notifier().prune_listeners().await;
                if pruned > 0 {
                    tracing::debug!(pruned, "gave up the routes of applications no longer waited for here");
                }
            }
        }
    }
}

/// Measures the offset to the database's clock once; a failure keeps the
/// last offset (the database being away is reported by the calls).
pub(crate) async fn sync_clock(clock: &DatabaseClock<Arc<dyn Clock>>, store: &dyn Store) {
    let before = clock.base_now();
    match store.database_time().await {
        Ok(database) => {
            let offset = clock.measured(before, database, clock.base_now());
            if offset.abs() > chrono::TimeDelta::seconds(1) {
                tracing::warn!(
                    offset_ms = offset.num_milliseconds(),
                    "this host's clock is off from the database's; using the database's"
                );
            }
        }
        Err(error) => tracing::debug!(%error, "cannot read the database's clock"),
    }
}

/// Measures the offset to the database's clock every [`CLOCK_SYNC_EVERY`].
pub(crate) async fn keep_clock_synced(
    clock: Arc<DatabaseClock<Arc<dyn Clock>>>,
    store: Arc<dyn Store>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(CLOCK_SYNC_EVERY) => sync_clock(&clock, store.as_ref()).await,
        }
    }
}
