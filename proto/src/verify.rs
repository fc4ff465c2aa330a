//! Verifying what the server hands a relying party, from wire messages and
//! public keys alone: the server's signature over an event and the device's
//! signature over its decision (docs/relying-party.md). The same checks any
//! relying party can write in its own language from the documented layouts.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::signing::{self, DecisionPayload, EventPayload, SignedVerdict};
use crate::v1;

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The event names a key the server does not publish.
    #[error("the event is signed by key {0:?}, which ListServerKeys does not list")]
    UnknownKey(String),
    /// A key, signature or field has the wrong size or form.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The transaction carries no decision to verify.
    #[error("the transaction has no device decision (not ACCEPTED or DENIED by a device)")]
    NoDecision,
    /// The display hash does not match the message and context shown.
    #[error("the decision's display hash does not match the transaction's message and context")]
    DisplayMismatch,
    /// The signature does not verify over the canonical bytes.
    #[error("the {0} signature does not verify")]
    BadSignature(&'static str),
}

/// The canonical bytes the server signed for `event`.
pub fn event_bytes(event: &v1::Event) -> Vec<u8> {
    let occurred_at_micros = event.occurred_at.map_or(0, |t| {
        t.seconds
            .saturating_mul(1_000_000)
            .saturating_add(i64::from(t.nanos / 1000))
    });
    signing::event_bytes(&EventPayload {
        application_id: &event.application_id,
        cursor: event.cursor,
        event_type: &event.r#type,
        transaction_id: &event.transaction_id,
        user_id: &event.user_id,
        device_id: &event.device_id,
        reason: &event.reason,
        fraud_reported: event.fraud_reported,
        binding: &event.binding,
        occurred_at_micros,
    })
}

fn verifying_key(bytes: &[u8], what: &'static str) -> Result<VerifyingKey, VerifyError> {
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| VerifyError::Malformed(what))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| VerifyError::Malformed(what))
}

fn signature(bytes: &[u8], what: &'static str) -> Result<Signature, VerifyError> {
    let bytes: [u8; 64] = bytes.try_into().map_err(|_| VerifyError::Malformed(what))?;
    Ok(Signature::from_bytes(&bytes))
}

/// Verifies the server's signature over `event` with the published `keys`;
/// returns the key that signed it.
pub fn verify_event<'k>(
    event: &v1::Event,
    keys: &'k [v1::ServerKey],
) -> Result<&'k v1::ServerKey, VerifyError> {
    let key = keys
        .iter()
        .find(|key| key.key_id == event.key_id)
        .ok_or_else(|| VerifyError::UnknownKey(event.key_id.clone()))?;
    let public = verifying_key(&key.public_key, "server public key")?;
    let signature = signature(&event.signature, "event signature")?;
    public
        .verify_strict(&event_bytes(event), &signature)
        .map_err(|_| VerifyError::BadSignature("event"))?;
    Ok(key)
}

/// The canonical bytes the deciding device signed, rebuilt from the
/// transaction and its evidence.
pub fn decision_bytes(transaction: &v1::Transaction) -> Result<Vec<u8>, VerifyError> {
    let evidence = transaction
        .evidence
        .as_ref()
        .ok_or(VerifyError::NoDecision)?;
    let display = signing::display_hash(
        &transaction.message,
        &transaction.context.clone().into_iter().collect(),
    );
    if evidence.display_hash != display {
        return Err(VerifyError::DisplayMismatch);
    }
    let verdict = match evidence.decision() {
        v1::Decision::Accept => SignedVerdict::Accept,
        v1::Decision::Deny => SignedVerdict::Deny,
        v1::Decision::Unspecified => return Err(VerifyError::Malformed("decision")),
    };
    Ok(signing::decision_bytes(&DecisionPayload {
        application_id: &evidence.application_id,
        transaction_id: &transaction.transaction_id,
        device_id: &evidence.device_id,
        nonce: &evidence.nonce,
        verdict,
        reason: &evidence.reason,
        display_hash: &display,
        number: evidence.picked_number,
    }))
}

/// Verifies the device's signature over its decision with the device's
/// public key (`evidence.device_public_key`, or the one `GetDevice` gives
/// when `public_key` is passed); returns the key's id.
pub fn verify_decision(
    transaction: &v1::Transaction,
    public_key: Option<&[u8]>,
) -> Result<String, VerifyError> {
    let evidence = transaction
        .evidence
        .as_ref()
        .ok_or(VerifyError::NoDecision)?;
    let key_bytes = public_key.unwrap_or(&evidence.device_public_key);
    let public = verifying_key(key_bytes, "device public key")?;
    let signature = signature(&transaction.decision_signature, "decision signature")?;
    public
        .verify_strict(&decision_bytes(transaction)?, &signature)
        .map_err(|_| VerifyError::BadSignature("decision"))?;
    Ok(signing::key_id(key_bytes))
}
