//! Carries notifications between replicas that share one PostgreSQL, with
//! `NOTIFY`/`LISTEN`. Each replica listens on a channel of its own and
//! publishes what its own [`Notifier`] relays to the replicas that need it
//! ([`publish`]: routed by `presence` and `listeners`), and applies what
//! the others send it. The events table stays the truth: a lost wake-up
//! only delays a subscriber until its next poll, and a device that misses a
//! push or a cancellation gets the current state on its next reconnect or
//! decision.

mod pacing;
mod publish;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use self::pacing::Pacing;
use super::Notifier;
use crate::domain::Notice;
use crate::store::{PLANNING, Store};

/// The channel every replica published on before notices were routed:
/// still listened to, so notices from a replica of an older version reach
/// this one during a rolling upgrade.
const LEGACY_CHANNEL: &str = "assent_fanout";
/// Relayed notifications sent in one batch at most.
const BATCH: usize = 256;

/// How often an outage of the LISTEN connection is logged at most.
const OUTAGE_LOG_EVERY: Duration = Duration::from_secs(30);
/// Longest pause between two attempts to LISTEN again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How often a replica counts the others (when it knows of none, it
/// publishes nothing).
const PEER_COUNT_EVERY: Duration = Duration::from_secs(5);
/// How long a replica counts as present after it was last heard from,
/// whatever the leases say: a new replica says hello before it takes its
/// lease.
const HEARD_FOR: Duration = Duration::from_secs(30);

/// Whether any other replica may need this one's notices: assumed until
/// the first count (at the start) says otherwise, and for [`HEARD_FOR`]
/// after anything is heard from another replica (a new one says hello when
/// it starts, before it serves and before its lease counts); a replica
/// alone publishes nothing.
#[derive(Debug)]
struct Peers {
    counted_none: bool,
    heard_until: tokio::time::Instant,
}

impl Peers {
    fn new() -> Self {
        Self {
            counted_none: false,
            heard_until: tokio::time::Instant::now(),
        }
    }

    fn alone(&self) -> bool {
        self.counted_none && tokio::time::Instant::now() >= self.heard_until
    }

    fn heard(&mut self) {
        self.heard_until = tokio::time::Instant::now() + HEARD_FOR;
    }

    fn counted(&mut self, others: Result<i64, sqlx::Error>) {
        // A failed count assumes company: publishing to no one costs little.
        self.counted_none = matches!(others, Ok(0));
    }
}

/// The other replicas with a valid lease.
async fn count_others(pool: &PgPool, origin: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM replicas WHERE expires_at > now() AND id <> $1")
        .bind(origin)
        .fetch_one(pool)
        .await
}

/// Runs the bridge until `stop` fires.
pub async fn run(
    pool: PgPool,
    notifier: Arc<Notifier>,
    store: Arc<dyn Store>,
    mut outbox: mpsc::UnboundedReceiver<Notice>,
    stop: CancellationToken,
) {
    let origin = notifier.replica();
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
    // Hello to the replicas already running (an empty batch on the channel
    // every version listens to): they publish to this one from now on.
    publish::hello(&pool, origin).await;
    let publishing = publisher(&pool);
    let mut peers = Peers::new();
    let mut count = tokio::time::interval(PEER_COUNT_EVERY);
    count.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pacing = Pacing::default();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = count.tick() => peers.counted(count_others(&pool, origin).await),
            relay = outbox.recv(), if pacing.pending.len() < BATCH => {
                let Some(first) = relay else { break };
                pacing.pending.push(first);
                while pacing.pending.len() < BATCH {
                    match outbox.try_recv() {
                        Ok(next) => pacing.pending.push(next),
                        Err(_) => break,
                    }
                }
                if peers.alone() {
                    // No other replica to need them (the events table and
                    // the sessions' re-reads stay the truth for one that
                    // joins unheard).
                    pacing.pending.clear();
                }
            }
            () = tokio::time::sleep_until(pacing.next), if !pacing.pending.is_empty() => {
                let items = std::mem::take(&mut pacing.pending);
                pacing.publishing(items.len());
                let sent = publish::publish(&publishing, origin, &dedupe(items)).await;
                notifier.relayed().payloads_sent.fetch_add(sent, Ordering::Relaxed);
            }
            payload = inbox.recv() => {
                let Some(payload) = payload else { break };
                if apply(&notifier, store.as_ref(), origin, &payload).await {
                    peers.heard();
                }
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
    let channel = publish::channel_of(notifier.replica());
    let mut backoff = Duration::from_millis(100);
    let mut outage = Outage::default();
    loop {
        let mut listener = match dedicated_listener(&pool, &channel).await {
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
async fn dedicated_listener(pool: &PgPool, channel: &str) -> Result<PgListener, sqlx::Error> {
    let own = one_connection()
        .connect_with((*pool.connect_options()).clone())
        .await?;
    let mut listener = PgListener::connect_with(&own).await?;
    listener.ignore_pool_close_event(true);
    listener.listen_all([channel, LEGACY_CHANNEL]).await?;
    Ok(listener)
}

/// The publisher's own connection (one task publishes, one statement at
/// a time), opened when first needed and again after a failure. It plans
/// the routing statement once, generically and along the indexes
/// ([`PLANNING`]): on the shared pool every connection planned it anew on
/// each execution (its custom plans, costed on the arrays' sizes, never
/// gave way to a generic one), which took most of a busy relay's database
/// CPU — measured with three replicas on two cores, 0.49 of a core.
///
/// Its commits do not wait for their WAL flush (`synchronous_commit =
/// off`): a `NOTIFY` assigns its transaction an id and so writes a commit
/// record, and PostgreSQL holds its one notification-queue lock until that
/// record is flushed — every publish of every replica waited for a flush
/// in turn. A wake-up needs no durability: it is delivered at commit
/// either way, and after a crash the replicas read the truth again.
fn publisher(pool: &PgPool) -> PgPool {
    let options = (*pool.connect_options())
        .clone()
        .options(PLANNING)
        .options([("synchronous_commit", "off")]);
    one_connection().connect_lazy_with(options)
}

/// A pool of one connection that is kept (the listener's and the
/// publisher's own, outside the shared pool).
fn one_connection() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(Duration::from_secs(5))
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

/// Applies what another replica sent; whether it came from another
/// replica.
async fn apply(notifier: &Notifier, store: &dyn Store, origin: Uuid, payload: &str) -> bool {
    let Ok(batch) = serde_json::from_str::<publish::Batch>(payload) else {
        tracing::warn!("ignoring a malformed notification from another replica");
        return false;
    };
    if batch.origin == origin {
        return false;
    }
    let counts = notifier.relayed();
    counts.payloads_received.fetch_add(1, Ordering::Relaxed);
    counts.notices_received.fetch_add(
        u64::try_from(batch.items.len()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
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
    true
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
        let payloads = publish::Columns::of(&items).payloads(origin);
        assert!(payloads.len() > 1);
        let mut decoded = Vec::new();
        for payload in &payloads {
            assert!(payload.len() <= publish::MAX_PAYLOAD);
            let batch: publish::Batch = serde_json::from_str(payload).unwrap_or(publish::Batch {
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
