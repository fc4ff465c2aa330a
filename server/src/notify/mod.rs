//! Fan-out of applied changes to the tasks that care: subscribers of an
//! application's event log and connected device sessions.
//!
//! There is one notification type, the domain's [`Notice`]; a [`Notifier`]
//! publishes what a [`Change`] decided once the store has applied it, and
//! nothing else wakes anyone. The events table stays the truth: a wake-up
//! only says "look again". A notifier built with [`Notifier::with_relay`]
//! also hands every notice to a relay, which [`postgres`] carries to the
//! other replicas; what arrives from them is delivered locally only
//! ([`Notifier::deliver_remote`]).
//!
//! A notice a device must act on (a withdrawal, a push, a revocation) is
//! never dropped: a revocation ends the device's sessions at once, and a
//! session whose bounded inbox is full is ended (its agent reconnects and
//! re-reads what is open) rather than left to act on stale authority.

pub mod postgres;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::domain::transaction::Audience;
use crate::domain::{
    ApplicationId, Change, Device, DeviceId, Notice, Transaction, TransactionId, UserId,
};

/// How many notices a device session may have waiting before it is ended.
pub const SESSION_INBOX: usize = 64;

/// A notice for one session, with the transaction it concerns when the
/// publisher has it at hand (a push being asked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// What happened.
    pub notice: Notice,
    /// The transaction as applied, for [`Notice::Confirm`].
    pub transaction: Option<Arc<Transaction>>,
}

/// Why the notifier ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The device was revoked.
    Revoked,
    /// The session's inbox was full: it was not keeping up.
    FellBehind,
    /// The device opened a newer stream, here or on another replica.
    Replaced,
}

/// One live session as the notifier holds it.
#[derive(Debug)]
struct Entry {
    id: u64,
    stream: uuid::Uuid,
    opened_at: chrono::DateTime<chrono::Utc>,
    device: DeviceId,
    inbox: mpsc::Sender<Delivery>,
    end: Arc<Ending>,
    refresh: Arc<tokio::sync::Notify>,
}

/// A session's kill switch. A revocation outranks any other reason, so a
/// revoked device learns it was revoked.
#[derive(Debug, Default)]
struct Ending {
    reason: Mutex<Option<SessionEnd>>,
    token: CancellationToken,
}

impl Ending {
    fn end(&self, reason: SessionEnd) {
        let mut current = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        if current.is_none() || reason == SessionEnd::Revoked {
            *current = Some(reason);
        }
        self.token.cancel();
    }

    fn reason(&self) -> Option<SessionEnd> {
        *self.reason.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

type UserKey = (ApplicationId, UserId);

#[derive(Debug, Default)]
struct Sessions {
    by_user: HashMap<UserKey, Vec<Entry>>,
    user_of: HashMap<DeviceId, UserKey>,
}

/// A wait for one transaction's outcome; see [`Notifier::watch_outcome`].
#[derive(Debug)]
pub struct OutcomeWatch<'a> {
    notifier: &'a Notifier,
    id: TransactionId,
    receiver: watch::Receiver<()>,
}

impl OutcomeWatch<'_> {
    /// Marks what happened so far as seen.
    pub fn mark_seen(&mut self) {
        self.receiver.borrow_and_update();
    }

    /// Resolves when the outcome may have been decided since the last
    /// [`OutcomeWatch::mark_seen`]; an error if the notifier is gone.
    pub async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        self.receiver.changed().await
    }
}

impl Drop for OutcomeWatch<'_> {
    fn drop(&mut self) {
        let mut outcomes = self
            .notifier
            .outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Only this watch left (counted under the lock every watch takes).
        if outcomes
            .get(&self.id)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            outcomes.remove(&self.id);
        }
    }
}

/// The in-process hub.
#[derive(Debug, Default)]
pub struct Notifier {
    logs: Mutex<HashMap<ApplicationId, watch::Sender<u64>>>,
    outcomes: Mutex<HashMap<TransactionId, watch::Sender<()>>>,
    sessions: Mutex<Sessions>,
    next_session: AtomicU64,
    relay: Option<mpsc::UnboundedSender<Notice>>,
}

impl Notifier {
    /// A hub for one process.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A hub that also hands every notice to the returned relay queue.
    pub fn with_relay() -> (Arc<Self>, mpsc::UnboundedReceiver<Notice>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let notifier = Self {
            relay: Some(sender),
            ..Self::default()
        };
        (Arc::new(notifier), receiver)
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

    /// Queues a notice for every session of `audience`; a session that
    /// cannot take it is ended, never skipped.
    fn offer(&self, audience: &Audience, notice: &Notice, transaction: Option<&Arc<Transaction>>) {
        for (inbox, end) in self.each_session(audience) {
            let delivery = Delivery {
                notice: notice.clone(),
                transaction: transaction.cloned(),
            };
            if inbox.try_send(delivery).is_err() {
                tracing::warn!(?notice, "device session not keeping up; ending it");
                end.end(SessionEnd::FellBehind);
            }
        }
    }

    /// The inboxes and kill switches of the audience's sessions.
    fn each_session(&self, audience: &Audience) -> Vec<(mpsc::Sender<Delivery>, Arc<Ending>)> {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let (key, device, except) = match audience {
            Audience::Device { device_id } => match sessions.user_of.get(device_id) {
                Some(key) => (key.clone(), Some(*device_id), None),
                None => return Vec::new(),
            },
            Audience::User {
                application_id,
                user_id,
                except,
            } => ((*application_id, user_id.clone()), None, *except),
        };
        sessions
            .by_user
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|entry| device.is_none_or(|d| d == entry.device))
            .filter(|entry| except != Some(entry.device))
            .map(|entry| (entry.inbox.clone(), Arc::clone(&entry.end)))
            .collect()
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

    /// A watch that changes when the transaction reaches its terminal
    /// state, here or on another replica. Take it before reading the
    /// transaction, so no outcome is lost in between; the last watch of a
    /// transaction frees its entry when dropped (also when the waiting call
    /// is cancelled).
    pub fn watch_outcome(&self, id: TransactionId) -> OutcomeWatch<'_> {
        let mut outcomes = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        let receiver = outcomes
            .entry(id)
            .or_insert_with(|| watch::channel(()).0)
            .subscribe();
        OutcomeWatch {
            notifier: self,
            id,
            receiver,
        }
    }

    /// Ends the sessions of `device` opened before `stream` (at `opened_at`).
    fn replace_streams(
        &self,
        device: DeviceId,
        stream: uuid::Uuid,
        opened_at: chrono::DateTime<chrono::Utc>,
    ) {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(key) = sessions.user_of.get(&device) else {
            return;
        };
        for entry in sessions.by_user.get(key).into_iter().flatten() {
            if entry.device == device && entry.stream != stream && entry.opened_at <= opened_at {
                entry.end.end(SessionEnd::Replaced);
            }
        }
    }

    /// Registers a live session of `device`, opened at `opened_at` (the
    /// database-aligned clock, so streams order alike on every replica),
    /// replacing its other sessions here and on other replicas; dropping the
    /// registration removes it.
    pub fn register_device(
        self: &Arc<Self>,
        device: &Device,
        opened_at: chrono::DateTime<chrono::Utc>,
    ) -> DeviceRegistration {
        let (inbox, receiver) = mpsc::channel(SESSION_INBOX);
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let stream = uuid::Uuid::new_v4();
        let end = Arc::new(Ending::default());
        let refresh = Arc::new(tokio::sync::Notify::new());
        let key = (device.application_id, device.user_id.clone());
        {
            let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
            sessions.user_of.insert(device.id, key.clone());
            sessions.by_user.entry(key).or_default().push(Entry {
                id,
                stream,
                opened_at,
                device: device.id,
                inbox,
                end: Arc::clone(&end),
                refresh: Arc::clone(&refresh),
            });
        }
        self.publish(Notice::StreamOpened {
            device_id: device.id,
            stream,
            opened_at,
        });
        DeviceRegistration {
            notifier: Arc::clone(self),
            device: device.id,
            id,
            stream,
            receiver,
            end,
            refresh,
        }
    }

    /// Whether any session of this user is live on this replica.
    pub fn has_sessions_of(&self, app: ApplicationId, user: &UserId) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions
            .by_user
            .get(&(app, user.clone()))
            .is_some_and(|list| !list.is_empty())
    }

    /// How many device sessions are live on this replica.
    pub fn session_count(&self) -> u64 {
        let sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions
            .by_user
            .values()
            .map(|list| list.len() as u64)
            .sum()
    }

    /// Whether `device` has a live session on this replica.
    pub fn is_connected(&self, device: DeviceId) -> bool {
        !self
            .each_session(&Audience::Device { device_id: device })
            .is_empty()
    }
}

/// A live device session's inbox and kill switch.
#[derive(Debug)]
pub struct DeviceRegistration {
    notifier: Arc<Notifier>,
    device: DeviceId,
    id: u64,
    stream: uuid::Uuid,
    refresh: Arc<tokio::sync::Notify>,
    receiver: mpsc::Receiver<Delivery>,
    end: Arc<Ending>,
}

impl DeviceRegistration {
    /// The next notice for this session; `None` once the notifier ended it.
    pub async fn recv(&mut self) -> Option<Delivery> {
        tokio::select! {
            biased;
            () = self.end.token.cancelled() => None,
            delivery = self.receiver.recv() => delivery,
        }
    }

    /// Notified when the session should read what is open again (notices
    /// from other replicas may have been lost: [`Notifier::resync`]).
    pub fn refresh(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.refresh)
    }

    /// The stream's id (unique across replicas).
    pub fn stream(&self) -> uuid::Uuid {
        self.stream
    }

    /// A token cancelled when the notifier ends the session.
    pub fn end_token(&self) -> CancellationToken {
        self.end.token.clone()
    }

    /// Why the notifier ended the session, if it did.
    pub fn end_reason(&self) -> Option<SessionEnd> {
        self.end.reason()
    }

    /// The withdrawals still queued when the session ends: passing them on
    /// only takes authority away, so an ending session may still do so.
    pub fn queued_withdrawals(&mut self) -> Vec<Notice> {
        let mut withdrawals = Vec::new();
        while let Ok(delivery) = self.receiver.try_recv() {
            if matches!(delivery.notice, Notice::Withdraw { .. }) {
                withdrawals.push(delivery.notice);
            }
        }
        withdrawals
    }
}

impl Drop for DeviceRegistration {
    fn drop(&mut self) {
        let mut sessions = self
            .notifier
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(key) = sessions.user_of.get(&self.device).cloned() else {
            return;
        };
        let mut device_left = true;
        if let Some(list) = sessions.by_user.get_mut(&key) {
            list.retain(|entry| entry.id != self.id);
            device_left = !list.iter().any(|entry| entry.device == self.device);
            if list.is_empty() {
                sessions.by_user.remove(&key);
            }
        }
        if device_left {
            sessions.user_of.remove(&self.device);
        }
    }
}

#[cfg(test)]
mod tests;
