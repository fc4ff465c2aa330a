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

use super::{DeviceCommand, Notifier, Relay, RelayedCommand};
use crate::domain::{ApplicationId, DeviceId, TransactionId};
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
    items: Vec<Item>,
}

/// One notification on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Item {
    Events {
        app: Uuid,
    },
    Cancel {
        device: Uuid,
        tx: Uuid,
        reason: String,
    },
    Revoked {
        device: Uuid,
    },
    Confirm {
        device: Uuid,
        app: Uuid,
        tx: Uuid,
    },
}

impl From<Relay> for Item {
    fn from(relay: Relay) -> Self {
        match relay {
            Relay::Events(app) => Self::Events { app: app.as_uuid() },
            Relay::Device(
                device,
                RelayedCommand::Cancel {
                    transaction_id,
                    reason,
                },
            ) => Self::Cancel {
                device: device.as_uuid(),
                tx: transaction_id.as_uuid(),
                reason,
            },
            Relay::Device(device, RelayedCommand::Revoked) => Self::Revoked {
                device: device.as_uuid(),
            },
            Relay::Device(
                device,
                RelayedCommand::Confirm {
                    application_id,
                    transaction_id,
                },
            ) => Self::Confirm {
                device: device.as_uuid(),
                app: application_id.as_uuid(),
                tx: transaction_id.as_uuid(),
            },
        }
    }
}

/// Splits items into payloads under the size limit, each a JSON [`Batch`].
fn payloads(origin: Uuid, items: Vec<Item>) -> Vec<String> {
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
    mut outbox: mpsc::UnboundedReceiver<Relay>,
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
                let mut items = vec![Item::from(first)];
                while items.len() < BATCH {
                    match outbox.try_recv() {
                        Ok(next) => items.push(next.into()),
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
fn dedupe(items: Vec<Item>) -> Vec<Item> {
    let mut woken = BTreeSet::new();
    items
        .into_iter()
        .filter(|item| match item {
            Item::Events { app } => woken.insert(*app),
            _ => true,
        })
        .collect()
}

async fn publish(pool: &PgPool, origin: Uuid, items: Vec<Item>) {
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
    for item in batch.items {
        match item {
            Item::Events { app } => notifier.apply_remote_events(ApplicationId::from_uuid(app)),
            Item::Cancel { device, tx, reason } => notifier.deliver_local(
                DeviceId::from_uuid(device),
                DeviceCommand::Cancel {
                    transaction_id: TransactionId::from_uuid(tx),
                    reason,
                },
            ),
            Item::Revoked { device } => {
                notifier.deliver_local(DeviceId::from_uuid(device), DeviceCommand::Revoked);
            }
            Item::Confirm { device, app, tx } => {
                let device = DeviceId::from_uuid(device);
                // Only a replica holding the device's stream needs the push.
                if !notifier.is_connected(device) {
                    continue;
                }
                let found = store
                    .find_transaction(ApplicationId::from_uuid(app), TransactionId::from_uuid(tx))
                    .await;
                match found {
                    Ok(Some(record)) => {
                        notifier.deliver_local(device, DeviceCommand::Confirm(Box::new(record)));
                    }
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, "cannot load a relayed push"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_batches_are_split_under_the_payload_limit() {
        let origin = Uuid::new_v4();
        let items: Vec<Item> = (0..500)
            .map(|_| Item::Cancel {
                device: Uuid::new_v4(),
                tx: Uuid::new_v4(),
                reason: "answered_elsewhere".to_owned(),
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
        let app = Uuid::new_v4();
        let items = vec![
            Item::Events { app },
            Item::Revoked { device: app },
            Item::Events { app },
        ];
        assert_eq!(dedupe(items).len(), 2);
    }
}
