//! The device's signing identity: the Ed25519 key plus the device id it was
//! enrolled as, producing the stream hello and the signed decisions.

use assent_proto::signing::{self, DecisionPayload, SignedVerdict};
use assent_proto::v1::{ConfirmationRequest, Decision, SignedDecision};
use ed25519_dalek::Signer;

use crate::answer::Answer;
use crate::credentials::DeviceKey;

/// Signs on behalf of one enrolled device.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    device_id: String,
    key: DeviceKey,
}

impl Identity {
    /// The identity of `device_id`, holding `key`.
    pub(crate) fn new(device_id: String, key: DeviceKey) -> Self {
        Self { device_id, key }
    }

    /// The enrolled device id.
    pub(crate) fn device_id(&self) -> &str {
        &self.device_id
    }

    /// Signature over the hello bytes for the server's challenge.
    pub(crate) fn sign_hello(&self, challenge_nonce: &[u8]) -> Vec<u8> {
        let bytes = signing::hello_bytes(&self.device_id, challenge_nonce);
        self.key.0.sign(&bytes).to_bytes().to_vec()
    }

    /// The signed decision answering `request`; the number picked under
    /// number matching is signed and sent with an acceptance (a denial picks
    /// none).
    pub(crate) fn sign_decision(
        &self,
        request: &ConfirmationRequest,
        verdict: Answer,
    ) -> SignedDecision {
        let (signed, decision, reason, number) = match verdict {
            Answer::Accept { number } => (SignedVerdict::Accept, Decision::Accept, "", number),
            Answer::Deny(reason) => (SignedVerdict::Deny, Decision::Deny, reason.as_str(), None),
        };
        let display_hash = signing::display_hash(&request.message, &request.context);
        let bytes = signing::decision_bytes(&DecisionPayload {
            application_id: &request.application_id,
            transaction_id: &request.transaction_id,
            device_id: &self.device_id,
            nonce: &request.nonce,
            verdict: signed,
            reason,
            display_hash: &display_hash,
            number,
        });
        SignedDecision {
            transaction_id: request.transaction_id.clone(),
            decision: decision.into(),
            reason: reason.to_owned(),
            signature: self.key.0.sign(&bytes).to_bytes().to_vec(),
            number: number.unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signature, SigningKey, Verifier};

    use super::*;
    use crate::answer::DenyReason;

    #[test]
    fn a_denial_verifies_against_the_canonical_bytes() {
        let key = SigningKey::from_bytes(&[4; 32]);
        let identity = Identity::new("dev-1".into(), DeviceKey(key.clone()));
        let request = ConfirmationRequest {
            transaction_id: "tx".into(),
            application_id: "app".into(),
            message: "hi".into(),
            nonce: vec![5; 32],
            ..Default::default()
        };
        let decision = identity.sign_decision(&request, Answer::Deny(DenyReason::NotMe));
        assert_eq!(decision.decision, i32::from(Decision::Deny));
        assert_eq!(decision.reason, "not_me");
        let bytes = signing::decision_bytes(&DecisionPayload {
            application_id: "app",
            transaction_id: "tx",
            device_id: "dev-1",
            nonce: &[5; 32],
            verdict: SignedVerdict::Deny,
            reason: "not_me",
            display_hash: &signing::display_hash("hi", &Default::default()),
            number: None,
        });
        let signature = Signature::from_slice(&decision.signature).unwrap();
        assert!(key.verifying_key().verify(&bytes, &signature).is_ok());
    }

    #[test]
    fn a_picked_number_is_signed_and_sent() {
        let key = SigningKey::from_bytes(&[4; 32]);
        let identity = Identity::new("dev-1".into(), DeviceKey(key.clone()));
        let request = ConfirmationRequest {
            transaction_id: "tx".into(),
            application_id: "app".into(),
            message: "hi".into(),
            nonce: vec![5; 32],
            number_choices: vec![12, 45, 78],
            ..Default::default()
        };
        let decision = identity.sign_decision(&request, Answer::Accept { number: Some(45) });
        assert_eq!(decision.decision, i32::from(Decision::Accept));
        assert_eq!(decision.number, 45);
        let payload = DecisionPayload {
            application_id: "app",
            transaction_id: "tx",
            device_id: "dev-1",
            nonce: &[5; 32],
            verdict: SignedVerdict::Accept,
            reason: "",
            display_hash: &signing::display_hash("hi", &Default::default()),
            number: Some(45),
        };
        let signature = Signature::from_slice(&decision.signature).unwrap();
        let verify = |payload| {
            key.verifying_key()
                .verify(&signing::decision_bytes(&payload), &signature)
                .is_ok()
        };
        assert!(verify(payload));
        assert!(!verify(DecisionPayload {
            number: Some(12),
            ..payload
        }));
        assert!(!verify(DecisionPayload {
            number: None,
            ..payload
        }));
    }

    #[test]
    fn hello_signs_device_id_and_nonce() {
        let key = SigningKey::from_bytes(&[6; 32]);
        let identity = Identity::new("dev-2".into(), DeviceKey(key.clone()));
        let signature = Signature::from_slice(&identity.sign_hello(b"nonce")).unwrap();
        let bytes = signing::hello_bytes("dev-2", b"nonce");
        assert!(key.verifying_key().verify(&bytes, &signature).is_ok());
    }
}
