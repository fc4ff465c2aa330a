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
use sqlx::postgres::PgListener;
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

/// Runs the bridge until `stop` fires.
pub async fn run(
    pool: PgPool,
    notifier: Arc<Notifier>,
    store: Arc<dyn Store>,
    mut outbox: mpsc::UnboundedReceiver<Notice>,
    stop: CancellationToken,
) {
    let origin = Uuid::new_v4();
    let mut listener = loop {
        match listen(&pool).await {
            Ok(listener) => break listener,
            Err(error) => {
                tracing::warn!(%error, "cannot LISTEN for other replicas; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            relay = outbox.recv() => {
                let Some(first) = relay else { return };
                let mut items = vec![first];
                while items.len() < BATCH {
                    match outbox.try_recv() {
                        Ok(next) => items.push(next),
                        Err(_) => break,
                    }
                }
                publish(&pool, origin, dedupe(items)).await;
            }
            received = listener.recv() => match received {
                Ok(notification) => apply(&notifier, store.as_ref(), origin, notification.payload()).await,
                Err(error) => {
                    // PgListener reconnects on the next recv; notifications
                    // sent meanwhile are lost, which the design tolerates.
                    tracing::warn!(%error, "lost the LISTEN connection; reconnecting");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        }
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
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
