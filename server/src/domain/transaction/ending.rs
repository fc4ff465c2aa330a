//! How an open transaction ends without an answer — cancelled, expired,
//! failed by its device's revocation — and who is told to drop it.

use chrono::{DateTime, Utc};

use super::aggregate::{Refusal, Transaction};
use super::change::{Audience, Change, Notice};
use super::state::{Reason, TransactionKind, TransactionState, WithdrawReason};
use crate::domain::DeviceId;

impl Transaction {
    /// The application cancels it; whoever holds it is told.
    pub fn cancel(&self, now: DateTime<Utc>) -> Result<Change, Refusal> {
        let state = self.state_at(now);
        if state.is_terminal() {
            return Err(Refusal::Ended(state));
        }
        let mut change = self.transition(TransactionState::Cancelled, now, |_| {})?;
        change.guard.unexpired_at = Some(now);
        change
            .notices
            .extend(self.withdrawal(WithdrawReason::Cancelled));
        Ok(change)
    }

    /// Records EXPIRED once the TTL has passed; whoever holds it is told.
    pub fn expire(&self, now: DateTime<Utc>) -> Result<Change, Refusal> {
        if self.state.is_terminal() {
            return Err(Refusal::Ended(self.state));
        }
        if !self.is_overdue(now) {
            return Err(Refusal::NotOverdue);
        }
        let mut change = self.transition(TransactionState::Expired, now, |_| {})?;
        change
            .notices
            .extend(self.withdrawal(WithdrawReason::Expired));
        Ok(change)
    }

    /// FAILED with `device_revoked`, for a confirmation bound to a device
    /// being revoked; the device is told before its streams end.
    pub(crate) fn fail_for_revoked(
        &self,
        device: DeviceId,
        now: DateTime<Utc>,
    ) -> Result<Change, Refusal> {
        if self.device_id != Some(device) {
            return Err(Refusal::NotHeld);
        }
        if self.state.is_terminal() {
            return Err(Refusal::Ended(self.state));
        }
        let mut change = self.transition(TransactionState::Failed, now, |after| {
            after.reason = Some(Reason::DeviceRevoked);
        })?;
        change
            .notices
            .extend(self.withdrawal(WithdrawReason::DeviceRevoked));
        Ok(change)
    }

    /// The devices holding a confirmation of this transaction, less `except`.
    pub(super) fn holders(&self, except: Option<DeviceId>) -> Option<Audience> {
        match (self.kind, self.state, &self.user_id, self.device_id) {
            (TransactionKind::Push, TransactionState::Pending, Some(user), None) => {
                Some(Audience::User {
                    application_id: self.application_id,
                    user_id: user.clone(),
                    except,
                })
            }
            (_, TransactionState::Scanned, _, Some(device)) if Some(device) != except => {
                Some(Audience::Device { device_id: device })
            }
            _ => None,
        }
    }

    fn withdrawal(&self, reason: WithdrawReason) -> Option<Notice> {
        self.holders(None).map(|audience| Notice::Withdraw {
            audience,
            transaction_id: self.id,
            reason,
        })
    }
}
