//! What a device session exchanges with its device, in domain terms. The
//! transport (`grpc::device`) decodes the wire into [`FromDevice`] and
//! encodes [`ToDevice`] (and the error that ends a stream) back; the session
//! knows no wire type.

use std::sync::Arc;

use ed25519_dalek::Signature;

use super::{MESSAGE_BURST, MESSAGES_PER_SECOND};
use crate::domain::transaction::WithdrawReason;
use crate::domain::{Device, DeviceId, InputError, Notice, Transaction, TransactionId};
use crate::notify::SessionEnd;
use crate::service::{DecisionInput, Refused, RefusedExt as _, ServiceError};

/// A message from the device, parsed at the transport.
#[derive(Debug)]
pub enum FromDevice {
    /// The answer to the challenge.
    Hello {
        /// The device it claims to be.
        device_id: DeviceId,
        /// Its signature over the hello bytes.
        signature: Signature,
    },
    /// An OTP the user scanned or typed.
    SubmitOtp {
        /// The device's id for this request, echoed in the answer.
        request_id: u64,
        /// The OTP text, parsed by the use case.
        otp: String,
    },
    /// A signed decision.
    Decision(DecisionInput),
    /// The device asks to be revoked.
    Unenroll,
    /// A message that could not be parsed; answered with a rejection that
    /// keeps the stream open (or, before the hello, ends it).
    Invalid {
        /// The transaction it named, as sent (empty if none).
        transaction_id: String,
        /// What is wrong.
        error: InputError,
    },
    /// A message of no known kind (empty, or a second hello).
    Unexpected,
}

/// A message to the device.
#[derive(Debug)]
pub enum ToDevice {
    /// The challenge the device signs.
    Challenge {
        /// Fresh random bytes.
        nonce: [u8; 32],
    },
    /// The stream is authenticated.
    Ready {
        /// The device, as stored.
        device: Arc<Device>,
    },
    /// A confirmation request.
    Confirm {
        /// The transaction to decide on (shared with the other sessions it
        /// was delivered to).
        transaction: Arc<Transaction>,
        /// The application's display name.
        application_name: Arc<str>,
        /// The request id of the OTP that led here (0 for a push or a
        /// re-send).
        request_id: u64,
    },
    /// A request the device held was withdrawn.
    Withdrawn {
        /// Its transaction.
        transaction_id: TransactionId,
        /// Why.
        reason: WithdrawReason,
    },
    /// The result of one of the device's decisions.
    Decided {
        /// The transaction as it ended.
        transaction: Box<Transaction>,
        /// Whether this decision was the one applied.
        applied: bool,
    },
    /// A refusal that keeps the stream open.
    Rejected {
        /// The request it answers (0 for decisions).
        request_id: u64,
        /// The transaction it concerns, as the device named it.
        transaction_id: String,
        /// Why.
        error: ServiceError,
    },
    /// The server drains: reconnect elsewhere after the delay.
    GoAway {
        /// Suggested delay before reconnecting.
        reconnect_after_ms: u32,
    },
}

/// What a withdrawal tells the device.
pub(super) fn cancellation(notice: &Notice) -> Option<ToDevice> {
    let Notice::Withdraw {
        transaction_id,
        reason,
        ..
    } = notice
    else {
        return None;
    };
    Some(ToDevice::Withdrawn {
        transaction_id: *transaction_id,
        reason: *reason,
    })
}

/// The error a stream that sends too fast ends with.
pub(super) fn flooded(wait: std::time::Duration) -> ServiceError {
    ServiceError::ResourceExhausted(
        Refused::new(
            "MESSAGE_RATE",
            format!(
                "this stream sent more than {MESSAGE_BURST} messages at once or {MESSAGES_PER_SECOND} \
                 a second; reconnect and send less"
            ),
        )
        .retry_after(wait),
    )
}

/// The error a session ended by the notifier closes with.
pub(super) fn ended(reason: SessionEnd) -> ServiceError {
    match reason {
        SessionEnd::Revoked => ServiceError::device_revoked(),
        SessionEnd::FellBehind => ServiceError::TryAgain(
            "the device did not keep up with its stream; reconnect".to_owned(),
        ),
        SessionEnd::Replaced => ServiceError::Aborted(
            "this device opened a newer stream, which replaces this one (one live stream per \
             device)"
                .to_owned(),
        ),
    }
}
