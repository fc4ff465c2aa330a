//! Creating a transaction: an OTP login, or a push login that asks every
//! device of its user.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::aggregate::Transaction;
use super::change::{Change, Guard, Notice};
use super::state::{TransactionKind, TransactionState};
use crate::domain::clock::span;
use crate::domain::push::NumberMatch;
use crate::domain::{ApplicationId, Binding, Context, Message, SecretHash, TransactionId, UserId};

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

    /// The change that stores a new transaction.
    fn inserted(self, notices: Vec<Notice>) -> Change {
        let event = self.event(self.created_at);
        Change {
            expected: None,
            after: self,
            guard: Guard::default(),
            event,
            notices,
        }
    }
}
