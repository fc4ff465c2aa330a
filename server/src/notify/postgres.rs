//! Carries notifications between replicas that share one PostgreSQL, with
//! `NOTIFY`/`LISTEN` on one channel. Each replica publishes what its own
//! [`Notifier`] relays and applies what the others publish, skipping its own
//! messages. The events table stays the truth: a lost wake-up only delays a
//! subscriber until its next poll, and a device that misses a push or a
//! cancellation gets the current state on its next reconnect or decision.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Notifier;
use crate::domain::Notice;
use crate::store::Store;

/// The `LISTEN` channel.
const CHANNEL: &str = "assent_fanout";
/// `NOTIFY` payloads must stay under 8000 bytes.
const MAX_PAYLOAD: usize = 7000;
/// Relayed notifications sent in one batch at most.
const BATCH: usize = 256;

/// One published batch.
#[derive(Debug, Serialize, Deserialize)]
struct Batch {
    /// The publishing replica.
    origin: Uuid,
    /// What happened.
    items: Vec<Notice>,
}

/// Splits items into payloads under the size limit, each a JSON [`Batch`].
fn payloads(origin: Uuid, items: Vec<Notice>) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for item in items {
        current.push(item);
        let encoded = serde_json::to_string(&Batch {
            origin,
            items: current.clone(),
        })
        .unwrap_or_default();
        if encoded.len() > MAX_PAYLOAD && current.len() > 1 {
            let last = current.pop();
            out.extend(
                serde_json::to_string(&Batch {
                    origin,
                    items: std::mem::take(&mut current),
                })
                .ok(),
            );
            current.extend(last);
        }
    }
    if !current.is_empty() {
        out.extend(
            serde_json::to_string(&Batch {
                origin,
                items: current,
            })
            .ok(),
        );
    }
    out
}

/// How often an outage of the LISTEN connection is logged at most.
const OUTAGE_LOG_EVERY: Duration = Duration::from_secs(30);
/// Longest pause between two attempts to LISTEN again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs the bridge until `stop` fires.
pub async fn run(
    pool: PgPool,
    notifier: Arc<Notifier>,
    store: Arc<dyn Store>,
    mut outbox: mpsc::UnboundedReceiver<Notice>,
    stop: CancellationToken,
) {
    let origin = Uuid::new_v4();
    let (received, mut inbox) = mpsc::channel(1024);
    // The listener owns a connection of its own, outside the pool, and is
    // never cancelled halfway: a connection that ran LISTEN can never be
    // handed to an ordinary query.
    let listening = tokio::spawn(listen(
        pool.clone(),
        Arc::clone(&notifier),
        received,
        stop.clone(),
    ));
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            relay = outbox.recv() => {
                let Some(first) = relay else { break };
                let mut items = vec![first];
                while items.len() < BATCH {
                    match outbox.try_recv() {
                        Ok(next) => items.push(next),
                        Err(_) => break,
                    }
                }
                publish(&pool, origin, dedupe(items)).await;
            }
            payload = inbox.recv() => {
                let Some(payload) = payload else { break };
                apply(&notifier, store.as_ref(), origin, &payload).await;
            }
        }
    }
    listening.abort();
}

/// Receives notifications on a dedicated connection and passes them on,
/// reconnecting with capped backoff; outages are logged at most every
/// [`OUTAGE_LOG_EVERY`].
async fn listen(
    pool: PgPool,
    notifier: Arc<Notifier>,
    received: mpsc::Sender<String>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    let mut outage = Outage::default();
    loop {
        let mut listener = match dedicated_listener(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                outage.failed(&error);
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if outage.recovered() {
            // What the others published meanwhile is lost: read it again.
            notifier.resync();
        }
        backoff = Duration::from_millis(100);
        loop {
            match listener.recv().await {
                Ok(notification) => {
                    if received
                        .send(notification.payload().to_owned())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(error) => {
                    outage.failed(&error);
                    break;
                }
            }
        }
    }
}

/// Logs an outage when it starts, at most every [`OUTAGE_LOG_EVERY`] while
/// it lasts, and once when it ends.
#[derive(Default)]
struct Outage {
    last_logged: Option<tokio::time::Instant>,
}

impl Outage {
    fn failed(&mut self, error: &sqlx::Error) {
        let now = tokio::time::Instant::now();
        if self
            .last_logged
            .is_none_or(|at| now - at >= OUTAGE_LOG_EVERY)
        {
            tracing::warn!(%error, "cannot LISTEN for other replicas; retrying");
            self.last_logged = Some(now);
        }
    }

    /// Whether an outage just ended (LISTEN is back after a failure).
    fn recovered(&mut self) -> bool {
        let was_down = self.last_logged.take().is_some();
        if was_down {
            tracing::info!("listening for other replicas again");
        }
        was_down
    }
}

/// A listener on a one-connection pool of its own, with LISTEN done.
async fn dedicated_listener(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let own = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with((*pool.connect_options()).clone())
        .await?;
    let mut listener = PgListener::connect_with(&own).await?;
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Wake-ups of one application are idempotent: send each once per batch.
fn dedupe(items: Vec<Notice>) -> Vec<Notice> {
    let mut woken = BTreeSet::new();
    items
        .into_iter()
        .filter(|item| match item {
            Notice::EventsAppended { application_id } => woken.insert(*application_id),
            _ => true,
        })
        .collect()
}

async fn publish(pool: &PgPool, origin: Uuid, items: Vec<Notice>) {
    for payload in payloads(origin, items) {
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(&payload)
            .execute(pool)
            .await;
        if let Err(error) = sent {
            tracing::warn!(%error, "cannot notify other replicas");
        }
    }
}

async fn apply(notifier: &Notifier, store: &dyn Store, origin: Uuid, payload: &str) {
    let Ok(batch) = serde_json::from_str::<Batch>(payload) else {
        tracing::warn!("ignoring a malformed notification from another replica");
        return;
    };
    if batch.origin == origin {
        return;
    }
    for notice in batch.items {
        let transaction = match &notice {
            // Only a replica holding a session of the user needs the push,
            // and it loads it once for all of them.
            Notice::Confirm {
                application_id,
                user_id,
                transaction_id,
            } => {
                if !notifier.has_sessions_of(*application_id, user_id) {
                    continue;
                }
                match store
                    .find_transaction(*application_id, *transaction_id)
                    .await
                {
                    Ok(Some(transaction)) => Some(Arc::new(transaction)),
                    Ok(None) => continue,
                    Err(error) => {
                        // The session re-reads open pushes on its heartbeat.
                        tracing::warn!(%error, "cannot load a relayed push");
                        continue;
                    }
                }
            }
            _ => None,
        };
        notifier.deliver_remote(&notice, transaction.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::transaction::{Audience, WithdrawReason};
    use crate::domain::{ApplicationId, DeviceId, TransactionId};

    #[test]
    fn large_batches_are_split_under_the_payload_limit() {
        let origin = Uuid::new_v4();
        let items: Vec<Notice> = (0..500)
            .map(|_| Notice::Withdraw {
                audience: Audience::Device {
                    device_id: DeviceId::random(),
                },
                transaction_id: TransactionId::random(),
                reason: WithdrawReason::AnsweredElsewhere,
            })
            .collect();
        let payloads = payloads(origin, items.clone());
        assert!(payloads.len() > 1);
        let mut decoded = Vec::new();
        for payload in &payloads {
            assert!(payload.len() <= MAX_PAYLOAD);
            let batch: Batch = serde_json::from_str(payload).unwrap_or(Batch {
                origin,
                items: Vec::new(),
            });
            decoded.extend(batch.items);
        }
        assert_eq!(decoded, items);
    }

    #[test]
    fn wake_ups_are_sent_once_per_application() {
        let application_id = ApplicationId::random();
        let items = vec![
            Notice::EventsAppended { application_id },
            Notice::Revoked {
                device_id: DeviceId::random(),
            },
            Notice::EventsAppended { application_id },
        ];
        assert_eq!(dedupe(items).len(), 2);
    }
}
