//! Transactions of the fake server and the test's levers on them: new OTPs,
//! pushes (pending or sent live), re-sends, cancellations and dropped
//! streams; and the verification of decisions, as the real server does it.

use std::collections::BTreeMap;
use std::time::Duration;

use assent_proto::signing::{self, DecisionPayload, SignedVerdict};
use assent_proto::v1::{
    ConfirmationRequest, DecisionResult, Rejection, SignedDecision, TransactionKind,
    TransactionState, server_message,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};

use super::fake::{DEVICE_ID, Fake, NONCE, Tx, World, send};

/// A confirmation request as the fake sends it.
fn confirmation(
    request_id: u64,
    transaction_id: &str,
    kind: TransactionKind,
) -> ConfirmationRequest {
    ConfirmationRequest {
        request_id,
        transaction_id: transaction_id.into(),
        application_id: "app-1".into(),
        application_name: "Example Shop".into(),
        message: "Sign in from Firefox".into(),
        context: BTreeMap::from([("ip".into(), "192.0.2.1".into())]),
        expires_at: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp() + 60,
            nanos: 0,
        }),
        nonce: NONCE.to_vec(),
        user_id: "alice".into(),
        kind: kind.into(),
        number_choices: Vec::new(),
    }
}

impl World {
    /// Binds an OTP's transaction to the device; its confirmation request,
    /// or `None` when the OTP is unknown or spent.
    pub(super) fn scan(&mut self, request_id: u64, otp: &str) -> Option<ConfirmationRequest> {
        let bytes = STANDARD
            .decode(otp)
            .or_else(|_| URL_SAFE_NO_PAD.decode(otp))
            .unwrap_or_default();
        if bytes.len() != 48 {
            return None;
        }
        let id = uuid::Uuid::from_slice(&bytes[..16]).unwrap().to_string();
        let tx = self.transactions.get_mut(&id)?;
        if tx.secret != bytes[16..] || tx.scanned.is_some() {
            return None;
        }
        let request = confirmation(request_id, &id, TransactionKind::Otp);
        tx.scanned = Some(request.clone());
        Some(request)
    }
}

impl Fake {
    /// Verifies a decision like the server: the number is 0 or an offered
    /// one, an acceptance under number matching must pick, the signature
    /// covers the number, and a wrong pick denies with `wrong_number`.
    pub(super) fn decide(
        &self,
        decision: &SignedDecision,
        key: &VerifyingKey,
    ) -> server_message::Body {
        let mut world = self.0.lock().unwrap();
        let tx = world
            .transactions
            .get_mut(&decision.transaction_id)
            .unwrap();
        let request = tx.scanned.clone().unwrap();
        let accept = decision.decision == 1;
        let number = (decision.number != 0).then_some(decision.number);
        let reject = |code, message: &str| {
            server_message::Body::Rejection(Rejection {
                transaction_id: decision.transaction_id.clone(),
                code,
                message: message.into(),
                ..Default::default()
            })
        };
        match (tx.match_number, number) {
            (Some(_), None) if accept => return reject(3, "pick the number"),
            (None, Some(_)) => return reject(3, "number must be 0"),
            (_, Some(n)) if !request.number_choices.contains(&n) => {
                return reject(3, "number not offered");
            }
            _ => {}
        }
        let hash = signing::display_hash(&request.message, &request.context);
        let bytes = signing::decision_bytes(&DecisionPayload {
            application_id: &request.application_id,
            transaction_id: &request.transaction_id,
            device_id: DEVICE_ID,
            nonce: &request.nonce,
            verdict: if accept {
                SignedVerdict::Accept
            } else {
                SignedVerdict::Deny
            },
            reason: &decision.reason,
            display_hash: &hash,
            number,
        });
        let signature = Signature::from_slice(&decision.signature).unwrap();
        if key.verify(&bytes, &signature).is_err() {
            return reject(16, "bad signature");
        }
        let applied = tx.outcome.is_none();
        let decided = match (accept, number == tx.match_number) {
            (true, true) => (TransactionState::Accepted, String::new()),
            (true, false) => (TransactionState::Denied, "wrong_number".into()),
            (false, _) => (TransactionState::Denied, decision.reason.clone()),
        };
        let (state, reason) = tx.outcome.get_or_insert(decided).clone();
        server_message::Body::DecisionResult(DecisionResult {
            transaction_id: decision.transaction_id.clone(),
            state: state.into(),
            reason,
            applied,
        })
    }

    /// A fresh OTP for a new transaction (base64url without padding).
    pub fn new_otp(&self) -> (String, String) {
        let id = uuid::Uuid::new_v4();
        let secret: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
        let mut bytes = id.as_bytes().to_vec();
        bytes.extend(&secret);
        let tx = Tx {
            secret,
            ..Default::default()
        };
        self.0
            .lock()
            .unwrap()
            .transactions
            .insert(id.to_string(), tx);
        (URL_SAFE_NO_PAD.encode(bytes), id.to_string())
    }

    /// A pending push (sent to the device when it connects); with number
    /// matching the login page shows `choices[0]`, offered as `choices`.
    pub fn push(&self, choices: &[u32]) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let mut request = confirmation(0, &id, TransactionKind::Push);
        request.number_choices = choices.to_vec();
        let tx = Tx {
            scanned: Some(request),
            match_number: choices.first().copied(),
            ..Default::default()
        };
        self.0.lock().unwrap().transactions.insert(id.clone(), tx);
        id
    }

    /// A push sent at once on the current session.
    pub async fn push_live(&self, choices: &[u32]) -> String {
        let id = self.push(choices);
        self.resend(&id).await;
        id
    }

    /// Sends the transaction's confirmation request again (request id 0).
    pub async fn resend(&self, transaction_id: &str) {
        let request = {
            let world = self.0.lock().unwrap();
            world.transactions[transaction_id].scanned.clone().unwrap()
        };
        self.send_live(server_message::Body::ConfirmationRequest(request))
            .await;
    }

    /// Cancels the transaction and tells the device.
    pub async fn cancel(&self, transaction_id: &str, reason: &str) {
        let cancellation = self.cancelled(transaction_id, reason);
        self.send_live(server_message::Body::Cancellation(cancellation))
            .await;
    }

    /// Ends the current session (the device sees the stream end).
    pub fn kick(&self) {
        if let Some((_, kick)) = self.0.lock().unwrap().live.take() {
            kick.cancel();
        }
    }

    async fn send_live(&self, body: server_message::Body) {
        let live = self.0.lock().unwrap().live.clone();
        let out = live
            .and_then(|(out, _)| out.upgrade())
            .expect("a live session");
        send(&out, body).await;
    }

    /// The transaction's outcome, once it has one.
    pub fn outcome(&self, transaction_id: &str) -> Option<(TransactionState, String)> {
        self.0.lock().unwrap().transactions[transaction_id]
            .outcome
            .clone()
    }

    /// Waits (up to 10 s) until `condition` holds.
    pub async fn wait_until(&self, what: &str, condition: impl Fn(&World) -> bool) {
        for _ in 0..1000 {
            if condition(&self.0.lock().unwrap()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting until {what}");
    }

    /// Waits until the device holds a ready session.
    pub async fn wait_connected(&self) {
        self.wait_until("the device is connected", |world| world.live.is_some())
            .await;
    }

    /// Waits until the transaction has an outcome and returns it.
    pub async fn wait_for_outcome(&self, transaction_id: &str) -> (TransactionState, String) {
        self.wait_until("the transaction has an outcome", |world| {
            world.transactions[transaction_id].outcome.is_some()
        })
        .await;
        self.outcome(transaction_id).unwrap()
    }
}
