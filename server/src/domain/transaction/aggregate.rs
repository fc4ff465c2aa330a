//! The transaction record, its refusals, what a reader may conclude from
//! it, and the one way a change is made (checked against the state table).
//! Every rule of a transaction's life — the state table, who may answer,
//! number matching, the wrong-number denial, the fraud flag, expiry — is
//! decided in this module's siblings: `creation.rs`, `decision.rs`
//! (the device's scan and answer) and `ending.rs` (cancel, expiry, revocation).

use std::collections::BTreeMap;

use assent_proto::signing::SignedVerdict;
use chrono::{DateTime, Utc};

use super::change::{Change, Guard, NewEvent, Notice};
use super::state::{Reason, TransactionKind, TransactionState};
use crate::domain::device::Device;
use crate::domain::{
    ApplicationId, DenyReason, DeviceId, InputError, SecretHash, TransactionId, UserId,
};

/// A transaction as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Its id (also the public part of its OTP).
    pub id: TransactionId,
    /// Its application.
    pub application_id: ApplicationId,
    /// How it reaches a device.
    pub kind: TransactionKind,
    /// Its stored state (see [`Transaction::state_at`]).
    pub state: TransactionState,
    /// The restricted or answering user.
    pub user_id: Option<UserId>,
    /// The bound device.
    pub device_id: Option<DeviceId>,
    /// Why it was denied or failed.
    pub reason: Option<Reason>,
    /// The text shown.
    pub message: String,
    /// Extra facts shown.
    pub context: BTreeMap<String, String>,
    /// SHA-256 of the OTP secret, until the OTP is used.
    pub otp_hash: Option<SecretHash>,
    /// The confirmation nonce the device signs (pushes: from creation;
    /// OTP transactions: from the scan).
    pub nonce: Option<[u8; 32]>,
    /// The device's decision signature.
    pub decision_signature: Option<Vec<u8>>,
    /// Under number matching, the number the login page shows.
    pub match_number: Option<u8>,
    /// Under number matching, the numbers the device offers (else empty).
    pub number_choices: Vec<u8>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// When it ended.
    pub completed_at: Option<DateTime<Utc>>,
    /// Bumped by every change; what the store compares and sets.
    pub version: i64,
    /// The relying party's session binding.
    pub binding: Option<Vec<u8>>,
    /// What the deciding device signed, as it signed it.
    pub answer: Option<SignedAnswer>,
}

/// A device's signed answer as it signed it: a `wrong_number` denial was
/// signed as an accept with the wrong pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedAnswer {
    /// Accept or deny.
    pub verdict: SignedVerdict,
    /// The reason given with a denial.
    pub reason: Option<DenyReason>,
    /// The number picked under number matching.
    pub number: Option<u8>,
}

/// Why an operation was refused; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The OTP is unknown, used, expired, foreign or for another user:
    /// deliberately one answer.
    #[error("the OTP is not valid")]
    OtpRefused,
    /// The device holds no confirmation for this transaction.
    #[error("this device holds no confirmation for this transaction")]
    NotHeld,
    /// The transaction already ended (or expired) in this state.
    #[error("the transaction already ended: {}", .0.as_str())]
    Ended(TransactionState),
    /// The transaction is still open: it cannot be expired yet.
    #[error("the transaction has not expired yet")]
    NotOverdue,
    /// The decision signature does not verify.
    #[error("the decision signature does not verify for this transaction and nonce")]
    BadSignature,
    /// A decision field does not fit this transaction.
    #[error(transparent)]
    Input(#[from] InputError),
}

impl Transaction {
    /// The state as a reader must see it: an open transaction past its
    /// expiry is EXPIRED even before the sweeper records it.
    pub fn state_at(&self, now: DateTime<Utc>) -> TransactionState {
        if self.is_overdue(now) {
            TransactionState::Expired
        } else {
            self.state
        }
    }

    /// Whether it is still open in storage but past its expiry.
    pub fn is_overdue(&self, now: DateTime<Utc>) -> bool {
        !self.state.is_terminal() && self.expires_at <= now
    }

    /// Whether `device` may decide it, or could have: the device that
    /// scanned an OTP transaction; for a push, any device of its user until
    /// one of them answers, then that one.
    pub fn is_held_by(&self, device: &Device) -> bool {
        if device.application_id != self.application_id {
            return false;
        }
        match self.kind {
            TransactionKind::Otp => self.device_id == Some(device.id),
            TransactionKind::Push => {
                self.user_id.as_ref() == Some(&device.user_id)
                    && self.device_id.is_none_or(|bound| bound == device.id)
            }
        }
    }

    /// Whether `device` should be asked to confirm it now (on connect).
    pub fn awaits_answer_from(&self, device: &Device, now: DateTime<Utc>) -> bool {
        self.is_held_by(device)
            && self.state_at(now) == self.kind.decided_from()
            && self.nonce.is_some()
    }

    /// The change into `to`, checked against the state table; `edit` sets
    /// what else the transition records.
    pub(super) fn transition(
        &self,
        to: TransactionState,
        now: DateTime<Utc>,
        edit: impl FnOnce(&mut Self),
    ) -> Result<Change, Refusal> {
        if !to.entered_from().contains(&self.state) {
            return Err(Refusal::Ended(self.state));
        }
        let mut after = self.clone();
        after.state = to;
        after.version = self.version + 1;
        edit(&mut after);
        if to.is_terminal() {
            after.completed_at = Some(now);
            // A used or dead OTP has no reason to keep its hash.
            after.otp_hash = None;
        }
        let event = after.event(now);
        // Whoever waits for the outcome looks again.
        let notices = if to.is_terminal() {
            vec![Notice::Settled {
                application_id: self.application_id,
                transaction_id: self.id,
            }]
        } else {
            Vec::new()
        };
        Ok(Change {
            expected: Some(self.version),
            after,
            guard: Guard::default(),
            event,
            notices,
        })
    }

    /// The event recording that the transaction entered its current state.
    pub(super) fn event(&self, at: DateTime<Utc>) -> NewEvent {
        NewEvent {
            application_id: self.application_id,
            event_type: self.state.event(),
            transaction_id: Some(self.id),
            user_id: self.user_id.clone(),
            device_id: self.device_id,
            reason: self.reason,
            fraud_reported: self.state == TransactionState::Denied
                && self.reason == Some(Reason::NotMe),
            at,
        }
    }
}
