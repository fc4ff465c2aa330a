//! Which applications' notices this replica needs from the others. A
//! replica with event subscribers of an application holds a `listeners`
//! row for its wake-ups, one with outcome waiters a row for its settled
//! transactions, each taken (and committed) before the first of them reads,
//! so the relay sends those notices here and nowhere else; a row is given
//! up a while after the last of them left. Device notices need no such
//! row: they follow `presence`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use crate::domain::ApplicationId;
use crate::store::{Interest, Store};

/// How long an application's row stays after its last waiter or subscriber
/// left: a steady trickle of short waits takes it once, not once per wait.
pub const LISTENER_IDLE: Duration = Duration::from_secs(60);

/// This replica's `listeners` rows.
pub(super) struct Listeners {
    store: Arc<dyn Store>,
    replica: Uuid,
    /// The rows held, with who uses each (a waiter's usual path: a lookup).
    held: Mutex<HashMap<(ApplicationId, Interest), Arc<Held>>>,
    /// Taken to insert or delete a row, so a row is never deleted under a
    /// new user: pruning takes its rows out of `held` first, and whoever
    /// wants one then waits here and inserts it again.
    writing: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Listeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listeners")
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

/// One held row.
#[derive(Debug)]
struct Held {
    users: AtomicUsize,
    released_at: Mutex<Instant>,
}

/// A waiter's or subscriber's hold on its application's row; dropping it
/// releases the hold.
#[derive(Debug)]
#[must_use = "the application's notices come here only while this is held"]
pub struct Listening(Option<Arc<Held>>);

impl Drop for Listening {
    fn drop(&mut self) {
        if let Some(held) = &self.0
            && held.users.fetch_sub(1, Ordering::AcqRel) == 1
        {
            *held
                .released_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        }
    }
}

impl Listening {
    /// A hold on nothing: one process, no other replica to hear from.
    pub(super) fn local() -> Self {
        Self(None)
    }
}

impl Listeners {
    pub(super) fn new(store: Arc<dyn Store>, replica: Uuid) -> Self {
        Self {
            store,
            replica,
            held: Mutex::new(HashMap::new()),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    /// A hold on the row of `key` if this replica has it.
    fn hold(&self, key: (ApplicationId, Interest)) -> Option<Listening> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.get(&key).map(|row| {
            row.users.fetch_add(1, Ordering::AcqRel);
            Listening(Some(Arc::clone(row)))
        })
    }

    /// Holds the row of `app` and `interest`, inserting it first if this
    /// replica has none. If the database refuses, the hold is on nothing and
    /// the caller's slow re-read (its safety net) brings what the others
    /// decide.
    pub(super) async fn listen(&self, app: ApplicationId, interest: Interest) -> Listening {
        let key = (app, interest);
        if let Some(listening) = self.hold(key) {
            return listening;
        }
        let _writing = self.writing.lock().await;
        if let Some(listening) = self.hold(key) {
            return listening;
        }
        let listened = self
            .store
            .application_listened(app, interest, self.replica)
            .await;
        if let Err(error) = listened {
            tracing::warn!(%error, "cannot route this application's notices here yet");
            return Listening(None);
        }
        let row = Arc::new(Held {
            users: AtomicUsize::new(1),
            released_at: Mutex::new(Instant::now()),
        });
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, Arc::clone(&row));
        Listening(Some(row))
    }

    /// Gives up the rows unused for `idle`; how many.
    pub(super) async fn prune(&self, idle: Duration) -> usize {
        let _writing = self.writing.lock().await;
        let idle: Vec<((ApplicationId, Interest), Arc<Held>)> = {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let keys: Vec<_> = held
                .iter()
                .filter(|(_, row)| {
                    row.users.load(Ordering::Acquire) == 0
                        && now
                            - *row
                                .released_at
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                            >= idle
                })
                .map(|(key, _)| *key)
                .collect();
            keys.into_iter()
                .filter_map(|key| held.remove(&key).map(|row| (key, row)))
                .collect()
        };
        let mut pruned = 0;
        for ((app, interest), row) in idle {
            let given_up = self
                .store
                .application_unlistened(app, interest, self.replica)
                .await;
            match given_up {
                Ok(()) => pruned += 1,
                // Still in the table: kept, and tried again next time.
                Err(error) => {
                    tracing::warn!(%error, "cannot give up a listener row");
                    self.held
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert((app, interest), row);
                }
            }
        }
        pruned
    }
}
