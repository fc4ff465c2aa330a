//! The hub: what an applied change decided is delivered here — wake-ups of
//! event subscribers, outcomes to waiting calls, notices to device
//! sessions — and handed to the relay for the other replicas.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, watch};

use super::listeners::{Listeners, Listening};
use super::sessions::{SessionEnd, Sessions};
use crate::domain::transaction::Audience;
use crate::domain::{ApplicationId, Change, Notice, Transaction, TransactionId};
use crate::store::{Interest, Store};

/// The in-process hub.
#[derive(Debug, Default)]
pub struct Notifier {
    logs: Mutex<HashMap<ApplicationId, watch::Sender<u64>>>,
    pub(super) outcomes: Mutex<HashMap<TransactionId, watch::Sender<()>>>,
    pub(super) sessions: Mutex<Sessions>,
    pub(super) next_session: AtomicU64,
    relay: Option<mpsc::UnboundedSender<Notice>>,
    /// This replica's id: its presence rows, its listener rows, its relay
    /// channel.
    replica: uuid::Uuid,
    /// Where the relay sends application notices (with a relay only).
    listeners: Option<Listeners>,
    /// What the relay carried.
    pub(super) relayed: RelayCounts,
}

/// What the relay carried since the start, for the metrics.
#[derive(Debug, Default)]
pub struct RelayCounts {
    /// `NOTIFY` payloads sent to other replicas.
    pub payloads_sent: AtomicU64,
    /// Payloads received from other replicas (each wakes the relay once).
    pub payloads_received: AtomicU64,
    /// Notices in them.
    pub notices_received: AtomicU64,
}

impl Notifier {
    /// A hub for one process.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            replica: uuid::Uuid::new_v4(),
            ..Self::default()
        })
    }

    /// A hub that also hands every notice to the returned relay queue, and
    /// records in `routes` which applications' notices it needs from the
    /// other replicas (without, it records nothing).
    pub fn with_relay(
        routes: Option<Arc<dyn Store>>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Notice>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let replica = uuid::Uuid::new_v4();
        let notifier = Self {
            relay: Some(sender),
            replica,
            listeners: routes.map(|store| Listeners::new(store, replica)),
            ..Self::default()
        };
        (Arc::new(notifier), receiver)
    }

    /// This replica's id.
    pub fn replica(&self) -> uuid::Uuid {
        self.replica
    }

    /// What the relay carried since the start.
    pub fn relayed(&self) -> &RelayCounts {
        &self.relayed
    }

    /// Routes `app`'s wake-ups ([`Interest::Events`]) or settled
    /// transactions ([`Interest::Outcomes`]) from the other replicas here
    /// while the returned hold lives. Take it before
    /// [`Notifier::watch_events`] or [`Notifier::watch_outcome`] and the
    /// first read: what another replica decides after this returns is
    /// relayed here.
    pub async fn listen_application(&self, app: ApplicationId, interest: Interest) -> Listening {
        match &self.listeners {
            Some(listeners) => listeners.listen(app, interest).await,
            None => Listening::local(),
        }
    }

    /// Gives up the routes of applications no one here has waited for or
    /// subscribed to for [`super::LISTENER_IDLE`]; how many.
    pub async fn prune_listeners(&self) -> usize {
        self.prune_listeners_idle_for(super::LISTENER_IDLE).await
    }

    /// Gives up the routes unused for `idle` (zero: every unused one).
    pub async fn prune_listeners_idle_for(&self, idle: std::time::Duration) -> usize {
        match &self.listeners {
            Some(listeners) => listeners.prune(idle).await,
            None => 0,
        }
    }

    /// Publishes what an applied change decided: the event's wake-up and
    /// the change's notices, here and on the other replicas.
    pub fn applied(&self, change: &Change) {
        self.publish(Notice::EventsAppended {
            application_id: change.event.application_id,
        });
        let transaction = Arc::new(change.after.clone());
        for notice in &change.notices {
            self.deliver(notice, Some(&transaction));
            self.relay(notice.clone());
        }
    }

    /// Publishes one notice here and on the other replicas.
    pub fn publish(&self, notice: Notice) {
        self.deliver(&notice, None);
        self.relay(notice);
    }

    /// Delivers a notice from another replica to this replica's sessions
    /// and subscribers only; `transaction` is the push a `Confirm` asks.
    pub fn deliver_remote(&self, notice: &Notice, transaction: Option<&Arc<Transaction>>) {
        self.deliver(notice, transaction);
    }

    fn relay(&self, notice: Notice) {
        if let Some(sender) = &self.relay {
            // The bridge only stops at shutdown, when nothing is lost by it.
            let _ = sender.send(notice);
        }
    }

    fn deliver(&self, notice: &Notice, transaction: Option<&Arc<Transaction>>) {
        match notice {
            Notice::EventsAppended { application_id } => self.wake(*application_id),
            Notice::Revoked { device_id } => {
                self.each_session(&Audience::Device {
                    device_id: *device_id,
                })
                .into_iter()
                .for_each(|(_, end)| end.end(SessionEnd::Revoked));
            }
            Notice::StreamOpened {
                device_id,
                stream,
                opened_at,
            } => self.replace_streams(*device_id, *stream, *opened_at),
            Notice::Confirm {
                application_id,
                user_id,
                ..
            } => {
                let audience = Audience::User {
                    application_id: *application_id,
                    user_id: user_id.clone(),
                    except: None,
                };
                self.offer(&audience, notice, transaction);
            }
            Notice::Withdraw { audience, .. } => self.offer(audience, notice, transaction),
            Notice::Settled { transaction_id, .. } => {
                let outcomes = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(sender) = outcomes.get(transaction_id) {
                    sender.send_replace(());
                }
            }
        }
    }

    fn wake(&self, app: ApplicationId) {
        let logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = logs.get(&app) {
            sender.send_modify(|version| *version = version.wrapping_add(1));
        }
    }

    /// A receiver that changes whenever `app`'s event log may have grown.
    /// Mark it seen before reading the log, so no wake-up is lost in between.
    pub fn watch_events(&self, app: ApplicationId) -> watch::Receiver<u64> {
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        logs.entry(app)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// After notices from other replicas may have been lost (the LISTEN
    /// connection was down): every subscriber reads its log again, every
    /// waiter its transaction, and every session what its device should be
    /// asked now.
    pub fn resync(&self) {
        {
            let logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
            for sender in logs.values() {
                sender.send_modify(|version| *version = version.wrapping_add(1));
            }
        }
        {
            let outcomes = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
            for sender in outcomes.values() {
                sender.send_replace(());
            }
        }
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        for entry in sessions.by_user.values().flatten() {
            entry.refresh.notify_one();
        }
    }
}
