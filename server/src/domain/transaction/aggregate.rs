//! The transaction record and its operations. Every rule of a transaction's
//! life — the state table, who may answer, number matching, the wrong-number
//! denial, the fraud flag, expiry — is decided here.

use std::collections::BTreeMap;
use std::time::Duration;

use assent_proto::signing::{self, DecisionPayload, SignedVerdict};
use chrono::{DateTime, Utc};

use super::change::{Audience, Change, Guard, NewEvent, Notice};
use super::state::{Reason, TransactionKind, TransactionState, WithdrawReason};
use crate::domain::clock::span;
use crate::domain::device::Device;
use crate::domain::push::NumberMatch;
use crate::domain::{
    ApplicationId, Binding, Context, DenyReason, DeviceId, InputError, Message, Otp, SecretHash,
    TransactionId, UserId,
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

/// A signed decision as the device sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Accept or deny.
    pub verdict: SignedVerdict,
    /// The reason of a denial.
    pub reason: Option<DenyReason>,
    /// The number picked under number matching.
    pub number: Option<u8>,
    /// The Ed25519 signature over the canonical decision bytes.
    pub signature: [u8; 64],
}

/// A new OTP login.
#[derive(Debug, Clone)]
pub struct NewOtpTransaction {
    /// Its id (the OTP's public part).
    pub id: TransactionId,
    /// Its application.
    pub application_id: ApplicationId,
    /// Restricts it to one user's devices.
    pub user_id: Option<UserId>,
    /// The text shown.
    pub message: Message,
    /// Extra facts shown.
    pub context: Context,
    /// SHA-256 of the OTP's secret part.
    pub otp_hash: SecretHash,
    /// Lifetime.
    pub ttl: Duration,
    /// The relying party's session binding.
    pub binding: Option<Binding>,
}

/// A new push login.
#[derive(Debug, Clone)]
pub struct NewPushTransaction {
    /// Its id.
    pub id: TransactionId,
    /// Its application.
    pub application_id: ApplicationId,
    /// Whose devices are asked.
    pub user_id: UserId,
    /// The text shown.
    pub message: Message,
    /// Extra facts shown.
    pub context: Context,
    /// The confirmation nonce the devices sign.
    pub nonce: [u8; 32],
    /// Number matching, if asked for.
    pub number_match: Option<NumberMatch>,
    /// Lifetime.
    pub ttl: Duration,
    /// The relying party's session binding.
    pub binding: Option<Binding>,
}

impl Transaction {
    /// Creates an OTP login (PENDING).
    pub fn create_otp(new: NewOtpTransaction, now: DateTime<Utc>) -> Change {
        let created = Self {
            id: new.id,
            application_id: new.application_id,
            kind: TransactionKind::Otp,
            state: TransactionState::Pending,
            user_id: new.user_id,
            device_id: None,
            reason: None,
            message: new.message.as_str().to_owned(),
            context: new.context.into_pairs(),
            otp_hash: Some(new.otp_hash),
            nonce: None,
            decision_signature: None,
            match_number: None,
            number_choices: Vec::new(),
            created_at: now,
            expires_at: now + span(new.ttl),
            completed_at: None,
            version: 1,
            binding: new.binding.map(Binding::into_bytes),
            answer: None,
        };
        created.inserted(Vec::new())
    }

    /// Creates a push login (PENDING) and asks every device of its user.
    pub fn create_push(new: NewPushTransaction, now: DateTime<Utc>) -> Change {
        let created = Self {
            id: new.id,
            application_id: new.application_id,
            kind: TransactionKind::Push,
            state: TransactionState::Pending,
            user_id: Some(new.user_id.clone()),
            device_id: None,
            reason: None,
            message: new.message.as_str().to_owned(),
            context: new.context.into_pairs(),
            otp_hash: None,
            nonce: Some(new.nonce),
            decision_signature: None,
            match_number: new.number_match.as_ref().map(|m| m.number),
            number_choices: new
                .number_match
                .map(|m| m.choices.to_vec())
                .unwrap_or_default(),
            created_at: now,
            expires_at: now + span(new.ttl),
            completed_at: None,
            version: 1,
            binding: new.binding.map(Binding::into_bytes),
            answer: None,
        };
        let confirm = Notice::Confirm {
            application_id: created.application_id,
            user_id: new.user_id,
            transaction_id: created.id,
        };
        created.inserted(vec![confirm])
    }

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

    /// The device hands in the OTP: PENDING → SCANNED, bound to the device
    /// with a fresh confirmation nonce. Every reason to refuse — wrong
    /// secret, another application or user, used, expired, revoked device —
    /// is the same [`Refusal::OtpRefused`].
    pub fn scan(
        &self,
        device: &Device,
        otp: &Otp,
        nonce: [u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Change, Refusal> {
        let is_genuine = self.otp_hash.as_ref().is_some_and(|hash| otp.matches(hash));
        let is_for_device = device.application_id == self.application_id
            && !device.is_revoked()
            && self
                .user_id
                .as_ref()
                .is_none_or(|user| *user == device.user_id);
        if !is_genuine
            || !is_for_device
            || self.kind != TransactionKind::Otp
            || otp.id() != self.id
            || self.state_at(now) != TransactionState::Pending
        {
            return Err(Refusal::OtpRefused);
        }
        let mut change = self.transition(TransactionState::Scanned, now, |after| {
            after.device_id = Some(device.id);
            after.user_id = Some(device.user_id.clone());
            after.nonce = Some(nonce);
            after.otp_hash = None;
        })?;
        change.guard = Guard {
            device_unrevoked: Some(device.id),
            unexpired_at: Some(now),
        };
        // A valid OTP gives back the strike its submission took.
        change.gives_back_strike = Some(device.id);
        Ok(change)
    }

    /// The device's signed answer. `verify` checks the device's signature
    /// over the canonical bytes the aggregate builds. A held transaction
    /// that already ended is refused with [`Refusal::Ended`], so a repeated
    /// decision learns the outcome.
    pub fn decide(
        &self,
        device: &Device,
        decision: &Decision,
        verify: impl FnOnce(&[u8]) -> bool,
        now: DateTime<Utc>,
    ) -> Result<Change, Refusal> {
        if !self.is_held_by(device) || device.is_revoked() {
            return Err(Refusal::NotHeld);
        }
        let state = self.state_at(now);
        if state != self.kind.decided_from() {
            return Err(if state.is_terminal() {
                Refusal::Ended(state)
            } else {
                Refusal::NotHeld
            });
        }
        let nonce = self.nonce.ok_or(Refusal::NotHeld)?;
        let number = match (self.match_number, decision.number, decision.verdict) {
            (Some(_), None, SignedVerdict::Accept) => {
                return Err(InputError::new(
                    "number",
                    "number matching is on: pick the number the login page shows",
                )
                .into());
            }
            (None, Some(_), _) => {
                return Err(InputError::new("number", "must be 0: no number matching here").into());
            }
            (_, number, _) => number,
        };
        if decision.verdict == SignedVerdict::Accept && decision.reason.is_some() {
            return Err(InputError::new("reason", "must be empty when accepting").into());
        }
        let bytes = signing::decision_bytes(&DecisionPayload {
            application_id: &self.application_id.to_string(),
            transaction_id: &self.id.to_string(),
            device_id: &device.id.to_string(),
            nonce: &nonce,
            verdict: decision.verdict,
            reason: decision.reason.map(DenyReason::as_str).unwrap_or_default(),
            display_hash: &signing::display_hash(&self.message, &self.context),
            number: number.map(u32::from),
        });
        if !verify(&bytes) {
            return Err(Refusal::BadSignature);
        }
        let (to, reason) = match decision.verdict {
            SignedVerdict::Accept if number != self.match_number => {
                (TransactionState::Denied, Some(Reason::WrongNumber))
            }
            SignedVerdict::Accept => (TransactionState::Accepted, None),
            SignedVerdict::Deny => (TransactionState::Denied, decision.reason.map(Reason::from)),
        };
        let mut change = self.transition(to, now, |after| {
            after.device_id = Some(device.id);
            after.user_id = Some(device.user_id.clone());
            after.reason = reason;
            after.decision_signature = Some(decision.signature.to_vec());
            after.answer = Some(SignedAnswer {
                verdict: decision.verdict,
                reason: decision.reason,
                number,
            });
        })?;
        change.guard = Guard {
            device_unrevoked: Some(device.id),
            unexpired_at: Some(now),
        };
        // The other devices of a push's user drop the request.
        if let Some(audience) = self.holders(Some(device.id)) {
            change.notices.push(Notice::Withdraw {
                audience,
                transaction_id: self.id,
                reason: WithdrawReason::AnsweredElsewhere,
            });
        }
        Ok(change)
    }

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
    fn holders(&self, except: Option<DeviceId>) -> Option<Audience> {
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

    /// The change into `to`, checked against the state table; `edit` sets
    /// what else the transition records.
    fn transition(
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
            gives_back_strike: None,
        })
    }

    fn inserted(self, notices: Vec<Notice>) -> Change {
        let event = self.event(self.created_at);
        Change {
            expected: None,
            after: self,
            guard: Guard::default(),
            event,
            notices,
            gives_back_strike: None,
        }
    }

    /// The event recording that the transaction entered its current state.
    fn event(&self, at: DateTime<Utc>) -> NewEvent {
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
