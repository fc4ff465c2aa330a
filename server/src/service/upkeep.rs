//! Background upkeep as use cases: expiring overdue transactions and
//! removing what retention no longer keeps.

use std::sync::Arc;
use std::time::Duration;

use super::{ServiceError, TransactionWriter};
use crate::domain::Clock;
use crate::domain::clock::span;
use crate::store::Store;

/// How many overdue transactions one sweep settles at most.
const SWEEP_BATCH: i64 = 500;

/// Expiry and retention.
pub struct UpkeepService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    writer: Arc<TransactionWriter>,
    /// How long events are kept.
    event_retention: Duration,
}

impl UpkeepService {
    /// Upkeep of `store`, expiring through `writer`, keeping events for `event_retention`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        writer: Arc<TransactionWriter>,
        event_retention: Duration,
    ) -> Self {
        Self {
            store,
            clock,
            writer,
            event_retention,
        }
    }

    /// Expires every overdue open transaction (one batch); returns how many
    /// this call expired (another replica or a decision may win some).
    pub async fn sweep(&self) -> Result<usize, ServiceError> {
        let now = self.clock.now();
        let overdue = self.store.overdue_transactions(now, SWEEP_BATCH).await?;
        let mut expired = 0;
        for transaction in overdue {
            let Ok(change) = transaction.expire(now) else {
                continue;
            };
            if self.writer.commit(&change).await? {
                expired += 1;
            }
        }
        Ok(expired)
    }

    /// Deletes events past retention.
    pub async fn purge(&self) -> Result<u64, ServiceError> {
        let now = self.clock.now();
        let before = now - span(self.event_retention);
        Ok(self.store.purge(before).await?)
    }
}
