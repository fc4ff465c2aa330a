//! Device sessions as the notifier holds them: registration, the bounded
//! inbox of each, and ending a session that is revoked, replaced or not
//! keeping up (a notice it must act on is never dropped).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Notifier;
use crate::domain::transaction::Audience;
use crate::domain::{ApplicationId, Device, DeviceId, Notice, Transaction, UserId};

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
pub(super) struct Entry {
    id: u64,
    stream: uuid::Uuid,
    opened_at: chrono::DateTime<chrono::Utc>,
    device: DeviceId,
    inbox: Inbox,
    end: Arc<Ending>,
    pub(super) refresh: Arc<tokio::sync::Notify>,
}

/// A session's kill switch. A revocation outranks any other reason, so a
/// revoked device learns it was revoked.
#[derive(Debug, Default)]
pub(super) struct Ending {
    reason: Mutex<Option<SessionEnd>>,
    token: CancellationToken,
}

impl Ending {
    pub(super) fn end(&self, reason: SessionEnd) {
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

/// A session's inbox. Boxed, so its first block (32 slots, allocated with
/// the channel and kept while the session idles) is 32 pointers, not 32
/// deliveries.
type Inbox = mpsc::Sender<Box<Delivery>>;

#[derive(Debug, Default)]
pub(super) struct Sessions {
    pub(super) by_user: HashMap<UserKey, Vec<Entry>>,
    user_of: HashMap<DeviceId, UserKey>,
}

impl Notifier {
    /// Queues a notice for every session of `audience`; a session that
    /// cannot take it is ended, never skipped.
    pub(super) fn offer(
        &self,
        audience: &Audience,
        notice: &Notice,
        transaction: Option<&Arc<Transaction>>,
    ) {
        for (inbox, end) in self.each_session(audience) {
            let delivery = Box::new(Delivery {
                notice: notice.clone(),
                transaction: transaction.cloned(),
            });
            if inbox.try_send(delivery).is_err() {
                tracing::warn!(?notice, "device session not keeping up; ending it");
                end.end(SessionEnd::FellBehind);
            }
        }
    }

    /// The inboxes and kill switches of the audience's sessions.
    pub(super) fn each_session(&self, audience: &Audience) -> Vec<(Inbox, Arc<Ending>)> {
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

    /// Ends the sessions of `device` opened before `stream` (at `opened_at`).
    pub(super) fn replace_streams(
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
            // Most users have one device: room for one, not Vec's first four.
            let list = sessions
                .by_user
                .entry(key)
                .or_insert_with(|| Vec::with_capacity(1));
            list.push(Entry {
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
    pub(super) receiver: mpsc::Receiver<Box<Delivery>>,
    end: Arc<Ending>,
}

impl DeviceRegistration {
    /// The next notice for this session; `None` once the notifier ended it.
    pub async fn recv(&mut self) -> Option<Delivery> {
        tokio::select! {
            biased;
            () = self.end.token.cancelled() => None,
            delivery = self.receiver.recv() => delivery.map(|boxed| *boxed),
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
