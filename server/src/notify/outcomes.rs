//! Waiting for one transaction's outcome: a watch per transaction with
//! waiters, freed by the last of them.

use std::sync::PoisonError;

use tokio::sync::watch;

use super::Notifier;
use crate::domain::TransactionId;

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

impl Notifier {
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
}
