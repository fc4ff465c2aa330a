//! Fan-out of "something happened" to the tasks that care: subscribers of an
//! application's event log and connected device sessions.
//!
//! The events table stays the truth; a notification only says "look again".
//! Everything goes through [`Notifier`]. A notifier built with
//! [`Notifier::with_relay`] also hands every notification to a relay, which
//! [`postgres`] carries to the other replicas with `NOTIFY`; what arrives from
//! them is applied locally only ([`Notifier::apply_remote_events`],
//! [`Notifier::deliver_local`]), so services never know about replicas.

pub mod postgres;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, watch};

use crate::domain::{ApplicationId, DeviceId, TransactionId};
use crate::store::TransactionRecord;

/// How many commands a slow device session may have queued before new ones
/// are dropped (the session re-reads state on reconnect, so nothing is lost).
const DEVICE_QUEUE: usize = 64;

/// A command for every live session of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceCommand {
    /// A confirmation the device holds no longer needs an answer.
    Cancel {
        /// The transaction.
        transaction_id: TransactionId,
        /// `cancelled`, `expired`, …
        reason: String,
    },
    /// The device was revoked: close the stream.
    Revoked,
    /// A push to the device's user: ask the device to confirm it.
    Confirm(Box<TransactionRecord>),
}

type Sessions = HashMap<DeviceId, Vec<(u64, mpsc::Sender<DeviceCommand>)>>;

/// A notification to pass on to the other replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relay {
    /// An application's event log grew.
    Events(ApplicationId),
    /// A command for a device, wherever its stream is.
    Device(DeviceId, RelayedCommand),
}

/// A device command as it travels between replicas (small: `NOTIFY`
/// payloads are limited, so a push travels as its id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayedCommand {
    /// See [`DeviceCommand::Cancel`].
    Cancel {
        /// The transaction.
        transaction_id: TransactionId,
        /// Why.
        reason: String,
    },
    /// See [`DeviceCommand::Revoked`].
    Revoked,
    /// See [`DeviceCommand::Confirm`]: the receiver loads the transaction.
    Confirm {
        /// Its application.
        application_id: ApplicationId,
        /// The push.
        transaction_id: TransactionId,
    },
}

/// The in-process hub.
#[derive(Debug, Default)]
pub struct Notifier {
    logs: Mutex<HashMap<ApplicationId, watch::Sender<u64>>>,
    sessions: Mutex<Sessions>,
    next_session: AtomicU64,
    relay: Option<mpsc::UnboundedSender<Relay>>,
}

impl Notifier {
    /// A hub for one process.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A hub that also hands every notification to the returned relay queue.
    pub fn with_relay() -> (Arc<Self>, mpsc::UnboundedReceiver<Relay>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let notifier = Self {
            relay: Some(sender),
            ..Self::default()
        };
        (Arc::new(notifier), receiver)
    }

    fn relay(&self, relay: Relay) {
        if let Some(sender) = &self.relay {
            // The bridge only stops at shutdown, when nothing is lost by it.
            let _ = sender.send(relay);
        }
    }

    /// Wakes every subscriber of `app`'s event log, here and on other replicas.
    pub fn events_appended(&self, app: ApplicationId) {
        self.apply_remote_events(app);
        self.relay(Relay::Events(app));
    }

    /// Wakes this replica's subscribers of `app` only.
    pub fn apply_remote_events(&self, app: ApplicationId) {
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

    /// Registers a live session of `device`; dropping the registration removes it.
    pub fn register_device(self: &Arc<Self>, device: DeviceId) -> DeviceRegistration {
        let (sender, receiver) = mpsc::channel(DEVICE_QUEUE);
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(device)
            .or_default()
            .push((id, sender));
        DeviceRegistration {
            notifier: Arc::clone(self),
            device,
            id,
            receiver,
        }
    }

    /// Delivers a command to every live session of `device`, here and on
    /// other replicas.
    pub fn send_to_device(&self, device: DeviceId, command: DeviceCommand) {
        let relayed = match &command {
            DeviceCommand::Cancel {
                transaction_id,
                reason,
            } => RelayedCommand::Cancel {
                transaction_id: *transaction_id,
                reason: reason.clone(),
            },
            DeviceCommand::Revoked => RelayedCommand::Revoked,
            DeviceCommand::Confirm(record) => RelayedCommand::Confirm {
                application_id: record.application_id,
                transaction_id: record.id,
            },
        };
        self.deliver_local(device, command);
        self.relay(Relay::Device(device, relayed));
    }

    /// Delivers a command to the live sessions of `device` on this replica only.
    pub fn deliver_local(&self, device: DeviceId, command: DeviceCommand) {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, sender) in sessions.get(&device).into_iter().flatten() {
            if sender.try_send(command.clone()).is_err() {
                tracing::warn!(device_id = %device, "device session queue full; command dropped");
            }
        }
    }

    /// How many device sessions are live on this replica.
    pub fn session_count(&self) -> u64 {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.values().map(|list| list.len() as u64).sum()
    }

    /// Whether `device` has a live session on this replica.
    pub fn is_connected(&self, device: DeviceId) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.get(&device).is_some_and(|list| !list.is_empty())
    }
}

/// A live device session's inbox.
#[derive(Debug)]
pub struct DeviceRegistration {
    notifier: Arc<Notifier>,
    device: DeviceId,
    id: u64,
    receiver: mpsc::Receiver<DeviceCommand>,
}

impl DeviceRegistration {
    /// The next command for this session.
    pub async fn recv(&mut self) -> Option<DeviceCommand> {
        self.receiver.recv().await
    }
}

impl Drop for DeviceRegistration {
    fn drop(&mut self) {
        let mut sessions = self
            .notifier
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = sessions.get_mut(&self.device) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                sessions.remove(&self.device);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commands_reach_every_session_of_the_device_only() {
        let notifier = Notifier::new();
        let device = DeviceId::random();
        let mut first = notifier.register_device(device);
        let mut second = notifier.register_device(device);
        let mut other = notifier.register_device(DeviceId::random());
        notifier.send_to_device(device, DeviceCommand::Revoked);
        assert_eq!(first.recv().await, Some(DeviceCommand::Revoked));
        assert_eq!(second.recv().await, Some(DeviceCommand::Revoked));
        assert!(other.receiver.try_recv().is_err());
    }

    #[tokio::test]
    async fn dropping_the_registration_disconnects() {
        let notifier = Notifier::new();
        let device = DeviceId::random();
        let registration = notifier.register_device(device);
        assert!(notifier.is_connected(device));
        drop(registration);
        assert!(!notifier.is_connected(device));
    }

    #[tokio::test]
    async fn notifications_are_relayed_but_remote_ones_are_not_relayed_again() {
        let (notifier, mut relay) = Notifier::with_relay();
        let app = ApplicationId::random();
        let device = DeviceId::random();
        notifier.events_appended(app);
        notifier.send_to_device(device, DeviceCommand::Revoked);
        assert_eq!(relay.recv().await, Some(Relay::Events(app)));
        assert_eq!(
            relay.recv().await,
            Some(Relay::Device(device, RelayedCommand::Revoked))
        );
        notifier.apply_remote_events(app);
        notifier.deliver_local(device, DeviceCommand::Revoked);
        assert!(relay.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_wake_up_after_marking_seen_is_not_lost() {
        let notifier = Notifier::new();
        let app = ApplicationId::random();
        let mut watcher = notifier.watch_events(app);
        watcher.borrow_and_update();
        notifier.events_appended(app);
        assert!(watcher.has_changed().unwrap_or(false));
    }
}
