//! Project Wycheproof's Ed25519 vectors (`tests/wycheproof/ed25519_test.json`,
//! vendored from the Wycheproof project, Apache-2.0) against the one
//! Ed25519 check every verification path uses (`assent_proto::verify::ed25519`):
//! each valid signature verifies, each invalid one (S ≥ L, truncated,
//! malleated, garbage appended, wrong length, …) does not. Plus the cases a
//! lax `verify` would accept and the strict rules refuse: a small-order key
//! with a small-order R and S = 0, which "verifies" any message.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;

use assent_proto::verify::{SignatureCheck, ed25519};
use ed25519_dalek::Verifier as _;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn case_18_every_wycheproof_ed25519_vector_gets_its_expected_result() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/wycheproof/ed25519_test.json");
    let suite: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for group in suite["testGroups"].as_array().unwrap() {
        let key = hex(group["publicKey"]["pk"].as_str().unwrap());
        for test in group["tests"].as_array().unwrap() {
            let message = hex(test["msg"].as_str().unwrap());
            let signature = hex(test["sig"].as_str().unwrap());
            let expected_valid = match test["result"].as_str().unwrap() {
                "valid" => true,
                "invalid" => false,
                other => panic!("unexpected result {other}"),
            };
            let verified = ed25519(&key, &message, &signature).is_ok();
            if verified != expected_valid {
                wrong.push(format!(
                    "tcId {} ({}): expected {}, got {}",
                    test["tcId"], test["comment"], expected_valid, verified
                ));
            }
            checked += 1;
        }
    }
    assert_eq!(checked, suite["numberOfTests"].as_u64().unwrap());
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn a_small_order_key_never_verifies_even_what_a_lax_check_accepts() {
    // A = the identity point (small order), R = identity, S = 0: the lax
    // equation [S]B = R + [k]A holds for every message.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(&identity);
    let lax = ed25519_dalek::VerifyingKey::from_bytes(&identity)
        .unwrap()
        .verify(
            b"anything at all",
            &ed25519_dalek::Signature::from_bytes(&signature),
        );
    assert!(
        lax.is_ok(),
        "the lax check accepts it (what this test guards)"
    );
    assert_eq!(
        ed25519(&identity, b"anything at all", &signature),
        Err(SignatureCheck::Invalid)
    );
}

#[test]
fn wrong_lengths_are_malformed_not_invalid() {
    let key = [9u8; 32];
    assert_eq!(
        ed25519(&key[..31], b"m", &[0u8; 64]),
        Err(SignatureCheck::MalformedKey)
    );
    for length in [0, 63, 65, 128] {
        let check = ed25519(
            &ed25519_dalek::SigningKey::from_bytes(&key)
                .verifying_key()
                .to_bytes(),
            b"m",
            &vec![0u8; length],
        );
        assert_eq!(check, Err(SignatureCheck::MalformedSignature), "{length}");
    }
}
