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

/// Why a bare Ed25519 check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureCheck {
    /// Not a 32-byte encoding of a curve point.
    #[error("malformed public key")]
    MalformedKey,
    /// Not 64 bytes.
    #[error("malformed signature")]
    MalformedSignature,
    /// The signature does not verify under the strict rules.
    #[error("the signature does not verify")]
    Invalid,
}

/// The one Ed25519 check every verification path uses — the device's hello
/// and decisions, enrollment proofs, the server's event and checkpoint
/// signatures, and a relying party's checks: RFC 8032 with the strict
/// rules (`verify_strict`: S < L, and neither the key nor R of small order),
/// so no signature is malleable and no weak key verifies everything.
pub fn ed25519(public_key: &[u8], message: &[u8], signature: &[u8]) -> Result<(), SignatureCheck> {
    let key: [u8; 32] = public_key
        .try_into()
        .map_err(|_| SignatureCheck::MalformedKey)?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| SignatureCheck::MalformedKey)?;
    let signature: [u8; 64] = signature
        .try_into()
        .map_err(|_| SignatureCheck::MalformedSignature)?;
    key.verify_strict(message, &Signature::from_bytes(&signature))
        .map_err(|_| SignatureCheck::Invalid)
}

/// What a check is of, in the caller's words: the key, the signature, and
/// what was signed.
struct Checked {
    key: &'static str,
    signature: &'static str,
    what: &'static str,
}

/// [`ed25519`] with the caller's words for what was checked.
fn check(
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
    named: &Checked,
) -> Result<(), VerifyError> {
    ed25519(public_key, message, signature).map_err(|error| match error {
        SignatureCheck::MalformedKey => VerifyError::Malformed(named.key),
        SignatureCheck::MalformedSignature => VerifyError::Malformed(named.signature),
        SignatureCheck::Invalid => VerifyError::BadSignature(named.what),
    })
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
    let named = Checked {
        key: "server public key",
        signature: "event signature",
        what: "event",
    };
    check(
        &key.public_key,
        &event_bytes(event),
        &event.signature,
        &named,
    )?;
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
    check(
        key_bytes,
        &decision_bytes(transaction)?,
        &transaction.decision_signature,
        &Checked {
            key: "device public key",
            signature: "decision signature",
            what: "decision",
        },
    )?;
    Ok(signing::key_id(key_bytes))
}
