//! Background upkeep as use cases: expiring overdue transactions and
//! removing what retention no longer keeps.

use std::sync::Arc;

use super::{Deps, ServiceError};
use crate::domain::clock::span;

/// How many overdue transactions one sweep settles at most.
const SWEEP_BATCH: i64 = 500;

/// Expiry and retention.
pub struct UpkeepService {
    deps: Arc<Deps>,
}

impl UpkeepService {
    /// The use case over shared dependencies.
    pub fn new(deps: Arc<Deps>) -> Self {
        Self { deps }
    }

    /// Expires every overdue open transaction (one batch); returns how many
    /// this call expired (another replica or a decision may win some).
    pub async fn sweep(&self) -> Result<usize, ServiceError> {
        let now = self.deps.clock.now();
        let overdue = self
            .deps
            .store
            .overdue_transactions(now, SWEEP_BATCH)
            .await?;
        let mut expired = 0;
        for transaction in overdue {
            let Ok(change) = transaction.expire(now) else {
                continue;
            };
            if self.deps.commit(&change).await? {
                expired += 1;
            }
        }
        Ok(expired)
    }

    /// Deletes events past retention.
    pub async fn purge(&self) -> Result<u64, ServiceError> {
        let now = self.deps.clock.now();
        let before = now - span(self.deps.limits.event_retention);
        Ok(self.deps.store.purge(before).await?)
    }
}
