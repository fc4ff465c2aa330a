//! What the device sends on an authenticated stream, parsed at this edge
//! and handed to one use case each.

use assent_proto::signing::SignedVerdict;
use assent_proto::v1::{self, DecisionResult, Rejection, server_message::Body};
use ed25519_dalek::Signature;

use super::DeviceSession;
use crate::domain::transaction::Decision;
use crate::domain::{DenyReason, Device, InputError, TransactionId};
use crate::grpc::{convert, secure_rng, status::to_status};
use crate::service::{DecisionInput, ServiceError};

/// Parses a 64-byte Ed25519 signature field.
pub fn signature(field: &'static str, bytes: &[u8]) -> Result<Signature, InputError> {
    Signature::from_slice(bytes)
        .map_err(|_| InputError::new(field, "must be a 64-byte Ed25519 signature"))
}

/// A refusal that keeps the stream open.
pub(super) fn rejection(request_id: u64, transaction_id: &str, error: &ServiceError) -> Body {
    let status = to_status(error);
    Body::Rejection(Rejection {
        request_id,
        transaction_id: transaction_id.to_owned(),
        code: status.code() as i32,
        message: status.message().to_owned(),
    })
}

/// Parses a wire decision.
fn decision_input(decision: &v1::SignedDecision) -> Result<DecisionInput, InputError> {
    let verdict = match v1::Decision::try_from(decision.decision) {
        Ok(v1::Decision::Accept) => SignedVerdict::Accept,
        Ok(v1::Decision::Deny) => SignedVerdict::Deny,
        _ => {
            return Err(InputError::new(
                "decision",
                "must be DECISION_ACCEPT or DECISION_DENY",
            ));
        }
    };
    let number = match decision.number {
        0 => None,
        n @ 10..=99 => u8::try_from(n).ok(),
        _ => {
            return Err(InputError::new(
                "number",
                "must be 0 or one of the offered choices",
            ));
        }
    };
    Ok(DecisionInput {
        transaction_id: TransactionId::parse(&decision.transaction_id)?,
        decision: Decision {
            verdict,
            reason: DenyReason::parse(&decision.reason)?,
            number,
            signature: signature("signature", &decision.signature)?.to_bytes(),
        },
    })
}

impl DeviceSession {
    /// An OTP handed in: a confirmation request, or a rejection.
    pub(super) async fn submit_otp(&self, device: &Device, submit: v1::SubmitOtp) -> Body {
        let scanned = self
            .services
            .confirmations
            .submit_otp(device, &submit.otp, &mut secure_rng())
            .await;
        match scanned {
            Ok(transaction) => {
                self.remember(&transaction);
                Body::ConfirmationRequest(convert::confirmation(
                    &transaction,
                    device,
                    submit.request_id,
                ))
            }
            Err(error) => rejection(submit.request_id, "", &error),
        }
    }

    /// A signed decision: its result, or a rejection.
    pub(super) async fn decide(&self, device: &Device, decision: v1::SignedDecision) -> Body {
        let input = match decision_input(&decision) {
            Ok(input) => input,
            Err(error) => return rejection(0, &decision.transaction_id, &error.into()),
        };
        let held = self.take_held(input.transaction_id);
        let decided = self
            .services
            .confirmations
            .decide_held(device, input, held)
            .await;
        match decided {
            Ok(outcome) => {
                let transaction = &outcome.transaction;
                Body::DecisionResult(DecisionResult {
                    transaction_id: transaction.id.to_string(),
                    state: convert::state(transaction.state).into(),
                    reason: transaction
                        .reason
                        .map(|r| r.as_str().to_owned())
                        .unwrap_or_default(),
                    applied: outcome.applied,
                })
            }
            Err(error) => rejection(0, &decision.transaction_id, &error),
        }
    }
}
