//! The signing test vectors of docs/test-vectors.json: every layout's bytes
//! and an Ed25519 signature over them by a fixed key, so an implementation
//! in any language can check its own byte builder and verifier against the
//! same file. `ASSENT_WRITE_VECTORS=1 cargo test -p assent-proto --test
//! vectors` rewrites the file after a deliberate layout change.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;

use assent_proto::signing::{self, DecisionPayload, EventPayload, SignedVerdict};
use ed25519_dalek::{Signer, SigningKey, Verifier};
use serde_json::{Value, json};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// One vector: its inputs, the bytes, and the fixed key's signature.
fn vector(key: &SigningKey, name: &str, inputs: Value, bytes: &[u8]) -> Value {
    json!({
        "name": name,
        "inputs": inputs,
        "bytes_hex": hex(bytes),
        "signature_hex": hex(&key.sign(bytes).to_bytes()),
    })
}

fn vectors() -> Value {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let public = key.verifying_key().to_bytes();
    let mut context = BTreeMap::new();
    context.insert("browser".to_owned(), "Firefox".to_owned());
    context.insert("location".to_owned(), "Berlin".to_owned());
    let display = signing::display_hash("Log in to Example Shop?", &context);
    let nonce = [0x5au8; 32];
    let app = "0b8e2d1c-4f5a-4b6c-8d7e-9f0a1b2c3d4e";
    let tx = "6a3c2b1d-0e9f-4a8b-9c7d-6e5f4a3b2c1d";
    let device = "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f";
    let decision = |verdict, reason: &'static str, number: Option<u32>| {
        signing::decision_bytes(&DecisionPayload {
            application_id: app,
            transaction_id: tx,
            device_id: device,
            nonce: &nonce,
            verdict,
            reason,
            display_hash: &display,
            number,
        })
    };
    let decision_inputs = |verdict: &str, reason: &str, number: Option<u32>| {
        json!({
            "application_id": app, "transaction_id": tx, "device_id": device,
            "nonce_hex": hex(&nonce), "decision": verdict, "reason": reason,
            "display_hash_hex": hex(&display), "picked_number": number,
        })
    };
    let event = |binding: &[u8]| {
        signing::event_bytes(&EventPayload {
            application_id: app,
            cursor: 4_398_046_511_105,
            event_type: "transaction.accepted",
            transaction_id: tx,
            user_id: "alice",
            device_id: device,
            reason: "",
            fraud_reported: false,
            binding,
            occurred_at_micros: 1_764_489_600_123_456,
        })
    };
    let binding = b"session-hash";
    json!({
        "about": "Assent signing test vectors (docs/relying-party.md, docs/protocol.md). \
                  Every layout is a label then fields, each a 4-byte big-endian length and \
                  its bytes. Signatures are Ed25519 (RFC 8032) by the key whose seed is 32 \
                  bytes of 0x07.",
        "public_key_hex": hex(&public),
        "key_id": signing::key_id(&public),
        "display_hash": {
            "inputs": { "message": "Log in to Example Shop?", "context": context },
            "sha256_hex": hex(&display),
        },
        "vectors": [
            vector(&key, "hello", json!({"device_id": device, "challenge_nonce_hex": hex(&nonce)}),
                &signing::hello_bytes(device, &nonce)),
            vector(&key, "enroll", json!({"code": "ABCD-EFGH", "public_key_hex": hex(&public),
                "device_name": "kiosk-1"}),
                &signing::enroll_bytes("ABCD-EFGH", &public, "kiosk-1")),
            vector(&key, "decision accept", decision_inputs("accept", "", None),
                &decision(SignedVerdict::Accept, "", None)),
            vector(&key, "decision deny not_me", decision_inputs("deny", "not_me", None),
                &decision(SignedVerdict::Deny, "not_me", None)),
            vector(&key, "decision accept with a picked number",
                decision_inputs("accept", "", Some(42)),
                &decision(SignedVerdict::Accept, "", Some(42))),
            vector(&key, "event", json!({
                "application_id": app, "cursor": 4_398_046_511_105u64,
                "type": "transaction.accepted", "transaction_id": tx, "user_id": "alice",
                "device_id": device, "reason": "", "fraud_reported": false,
                "binding_hex": hex(binding), "occurred_at_micros": 1_764_489_600_123_456i64,
            }), &event(binding)),
        ],
    })
}

#[test]
fn the_documented_vectors_match_the_layouts_and_verify() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/test-vectors.json");
    let fresh = vectors();
    if std::env::var_os("ASSENT_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&fresh).unwrap() + "\n";
        std::fs::write(path, text).unwrap();
    }
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("docs/test-vectors.json"))
            .expect("valid JSON");
    assert_eq!(stored, fresh, "docs/test-vectors.json is out of date");
    // And every stored signature verifies over the stored bytes.
    let public: [u8; 32] = unhex(stored["public_key_hex"].as_str().unwrap())
        .try_into()
        .unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
    for vector in stored["vectors"].as_array().unwrap() {
        let bytes = unhex(vector["bytes_hex"].as_str().unwrap());
        let signature: [u8; 64] = unhex(vector["signature_hex"].as_str().unwrap())
            .try_into()
            .unwrap();
        key.verify(&bytes, &ed25519_dalek::Signature::from_bytes(&signature))
            .unwrap();
    }
}
