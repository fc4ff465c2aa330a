//! The relying party's side of the event stream: one `Subscribe` task for
//! the whole run that routes each transaction's outcome event to the worker
//! waiting for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use assent_proto::v1::{CreateOtpAuthenticationRequest, SubscribeRequest};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::client::RpClient;

/// Event types that end a transaction.
const OUTCOMES: [&str; 5] = [
    "transaction.accepted",
    "transaction.denied",
    "transaction.expired",
    "transaction.cancelled",
    "transaction.failed",
];

/// An outcome as the relying party saw it.
#[derive(Debug)]
pub struct Outcome {
    /// When the subscriber received it.
    pub seen_at: Instant,
    /// Its type, e.g. `transaction.accepted`.
    pub kind: String,
}

type Waiting = HashMap<String, oneshot::Sender<Outcome>>;
/// The backlog marker's transaction id and who waits for it.
type Marker = Option<(String, oneshot::Sender<()>)>;

/// Routes outcome events to the workers that registered their transactions.
#[derive(Clone, Default)]
pub struct EventRouter {
    waiting: Arc<Mutex<Waiting>>,
    /// `transaction.created` of this transaction id ends the backlog sync.
    /// (tokio's mutex: held while the marker is created, so its event
    /// cannot slip past before the id is known).
    marker: Arc<tokio::sync::Mutex<Marker>>,
}

impl EventRouter {
    /// Registers `transaction_id`; the receiver gets its outcome event.
    pub fn expect(&self, transaction_id: &str) -> oneshot::Receiver<Outcome> {
        let (sender, receiver) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(transaction_id.to_owned(), sender);
        receiver
    }

    /// Stops waiting for `transaction_id` (after a failed flow).
    pub fn forget(&self, transaction_id: &str) {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(transaction_id);
    }

    /// Starts the subscriber task in `tasks`, then waits until it has read
    /// past the stored backlog: a marker transaction's `transaction.created`
    /// must come through.
    pub async fn start(&self, rp: RpClient, tasks: &mut JoinSet<()>) -> anyhow::Result<()> {
        let mut subscriber = rp.clone();
        let mut stream = subscriber
            .subscribe(SubscribeRequest {
                after_cursor: 0,
                from_head: false,
            })
            .await
            .context("Subscribe")?
            .into_inner();
        let router = self.clone();
        tasks.spawn(async move {
            // Ends when the server closes the stream or the task is aborted.
            while let Ok(Some(event)) = stream.message().await {
                router.route(&event.r#type, &event.transaction_id).await;
            }
        });
        let mut rp = rp;
        let mut slot = self.marker.lock().await;
        let marker = rp
            .create_otp_authentication(CreateOtpAuthenticationRequest {
                message: "assent-bench backlog marker".to_owned(),
                ..Default::default()
            })
            .await
            .context("create the backlog marker")?
            .into_inner()
            .transaction_id;
        let (sender, receiver) = oneshot::channel();
        *slot = Some((marker, sender));
        drop(slot);
        match tokio::time::timeout(Duration::from_secs(120), receiver).await {
            Ok(Ok(())) => Ok(()),
            _ => bail!("the event stream did not deliver the backlog marker within 120 s"),
        }
    }

    async fn route(&self, kind: &str, transaction_id: &str) {
        let seen_at = Instant::now();
        if OUTCOMES.contains(&kind) {
            let waiter = self
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(transaction_id);
            if let Some(waiter) = waiter {
                let _ = waiter.send(Outcome {
                    seen_at,
                    kind: kind.to_owned(),
                });
            }
        } else if kind == "transaction.created" {
            let mut marker = self.marker.lock().await;
            if marker.as_ref().is_some_and(|(id, _)| id == transaction_id)
                && let Some((_, sender)) = marker.take()
            {
                let _ = sender.send(());
            }
        }
    }
}
