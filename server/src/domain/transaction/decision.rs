//! What a device does with a transaction: hand in its OTP (the scan), and
//! answer with a signed decision, under number matching if asked.

use assent_proto::signing::{self, DecisionPayload, SignedVerdict};
use chrono::{DateTime, Utc};

use super::aggregate::{Refusal, SignedAnswer, Transaction};
use super::change::{Change, Guard, Notice};
use super::state::{Reason, TransactionKind, TransactionState, WithdrawReason};
use crate::domain::device::Device;
use crate::domain::rate::StrikeWindow;
use crate::domain::{DenyReason, InputError, Otp};

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

impl Transaction {
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
            otp_lookups: None,
        };
        // A valid OTP took no strike (the reservation matched it), so it
        // gives none back.
        Ok(change)
    }

    /// [`Transaction::scan`] decided on a copy the server already held,
    /// without reserving the lookup first (one round trip fewer): the
    /// change then also requires, at commit, that the device is not
    /// cooling off from wrong OTPs under `window` — the reservation's
    /// condition, which a valid OTP takes no strike under — so a device
    /// that is waiting out its window waits on this path too. A change that
    /// fails that guard, or finds the transaction no longer at this
    /// version, has changed nothing; the caller then takes the reserved
    /// path, which decides the submission as if this one never ran.
    pub fn scan_unreserved(
        &self,
        device: &Device,
        otp: &Otp,
        nonce: [u8; 32],
        window: StrikeWindow,
    ) -> Result<Change, Refusal> {
        let mut change = self.scan(device, otp, nonce, window.now)?;
        change.guard.otp_lookups = Some(window);
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
            otp_lookups: None,
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
}
