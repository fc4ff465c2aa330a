//! The canonical byte strings a device signs with its Ed25519 key.
//!
//! Every string is a sequence of fields, each written as a 4-byte big-endian
//! length followed by that many bytes. The first field is a domain-separation
//! label naming the purpose and the layout version, so a signature made for
//! one purpose can never be replayed as another. docs/protocol.md describes
//! the same layouts for implementers in other languages; change both together.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// Label of the stream authentication signature.
pub const HELLO_LABEL: &str = "assent.v1.hello";
/// Label of the enrollment proof-of-possession signature.
pub const ENROLL_LABEL: &str = "assent.v1.enroll";
/// Label of a confirmation decision signature.
pub const DECISION_LABEL: &str = "assent.v1.decision";
/// Label of the hash over what the device showed.
pub const DISPLAY_LABEL: &str = "assent.v1.display";
/// Label of the server's signature over an event.
pub const EVENT_LABEL: &str = "assent.v1.event";
/// Label of a sealed checkpoint of an application's event log.
pub const CHECKPOINT_LABEL: &str = "assent.v1.checkpoint";

/// The decision a device signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedVerdict {
    /// The login is approved.
    Accept,
    /// The login is refused.
    Deny,
}

impl SignedVerdict {
    fn as_bytes(self) -> &'static [u8] {
        match self {
            Self::Accept => b"accept",
            Self::Deny => b"deny",
        }
    }
}

/// Everything a decision signature covers.
#[derive(Debug, Clone, Copy)]
pub struct DecisionPayload<'a> {
    /// The application the transaction belongs to.
    pub application_id: &'a str,
    /// The transaction decided on.
    pub transaction_id: &'a str,
    /// The device that decides.
    pub device_id: &'a str,
    /// The fresh nonce from the confirmation request.
    pub nonce: &'a [u8],
    /// Accept or deny.
    pub verdict: SignedVerdict,
    /// The reason given with a denial (empty when none).
    pub reason: &'a str,
    /// [`display_hash`] of the message and context the device showed.
    pub display_hash: &'a [u8; 32],
    /// The number picked under number matching, if the request offered choices.
    pub number: Option<u32>,
}

/// A length-prefixed field writer; the only way the layouts are built.
struct Fields(Vec<u8>);

impl Fields {
    fn new(label: &str) -> Self {
        let mut fields = Self(Vec::with_capacity(256));
        fields.push(label.as_bytes());
        fields
    }

    fn push(&mut self, field: &[u8]) -> &mut Self {
        // Fields are bounded by the 64 KiB message limit, far below u32::MAX.
        let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(field);
        self
    }
}

/// Bytes signed to authenticate a `Connect` stream.
pub fn hello_bytes(device_id: &str, challenge_nonce: &[u8]) -> Vec<u8> {
    let mut fields = Fields::new(HELLO_LABEL);
    fields.push(device_id.as_bytes()).push(challenge_nonce);
    fields.0
}

/// Bytes signed with the new key at enrollment (proof of possession).
pub fn enroll_bytes(code: &str, public_key: &[u8], device_name: &str) -> Vec<u8> {
    let mut fields = Fields::new(ENROLL_LABEL);
    fields
        .push(code.as_bytes())
        .push(public_key)
        .push(device_name.as_bytes());
    fields.0
}

/// SHA-256 over what the device showed: the message and the context pairs in
/// key order.
pub fn display_hash(message: &str, context: &BTreeMap<String, String>) -> [u8; 32] {
    let mut fields = Fields::new(DISPLAY_LABEL);
    fields.push(message.as_bytes());
    let count = u32::try_from(context.len()).unwrap_or(u32::MAX);
    fields.push(&count.to_be_bytes());
    for (key, value) in context {
        fields.push(key.as_bytes()).push(value.as_bytes());
    }
    Sha256::digest(&fields.0).into()
}

/// Bytes signed for a decision.
pub fn decision_bytes(payload: &DecisionPayload<'_>) -> Vec<u8> {
    let mut fields = Fields::new(DECISION_LABEL);
    fields
        .push(payload.application_id.as_bytes())
        .push(payload.transaction_id.as_bytes())
        .push(payload.device_id.as_bytes())
        .push(payload.nonce)
        .push(payload.verdict.as_bytes())
        .push(payload.reason.as_bytes())
        .push(payload.display_hash)
        .push(
            payload
                .number
                .map(|n| n.to_string())
                .unwrap_or_default()
                .as_bytes(),
        );
    fields.0
}

/// Everything the server's signature over an event covers. Empty strings
/// stand for absent fields.
#[derive(Debug, Clone, Copy)]
pub struct EventPayload<'a> {
    /// The application whose log holds the event.
    pub application_id: &'a str,
    /// Its cursor.
    pub cursor: u64,
    /// Its type (`transaction.accepted`, …).
    pub event_type: &'a str,
    /// The transaction concerned.
    pub transaction_id: &'a str,
    /// The user concerned.
    pub user_id: &'a str,
    /// The device concerned.
    pub device_id: &'a str,
    /// The reason of a denied or failed outcome.
    pub reason: &'a str,
    /// The fraud flag.
    pub fraud_reported: bool,
    /// The transaction's session binding.
    pub binding: &'a [u8],
    /// When it happened, in microseconds since the Unix epoch.
    pub occurred_at_micros: i64,
}

/// Bytes the server signs for an event: the label, then each field; the
/// cursor and the time as 8-byte big-endian integers, the fraud flag as one
/// byte (0 or 1).
pub fn event_bytes(payload: &EventPayload<'_>) -> Vec<u8> {
    let mut fields = Fields::new(EVENT_LABEL);
    fields
        .push(payload.application_id.as_bytes())
        .push(&payload.cursor.to_be_bytes())
        .push(payload.event_type.as_bytes())
        .push(payload.transaction_id.as_bytes())
        .push(payload.user_id.as_bytes())
        .push(payload.device_id.as_bytes())
        .push(payload.reason.as_bytes())
        .push(&[u8::from(payload.fraud_reported)])
        .push(payload.binding)
        .push(&payload.occurred_at_micros.to_be_bytes());
    fields.0
}

/// Bytes the server signs (and hashes into the chain) for a checkpoint:
/// the label, the application id, its sequence number, the cursor range
/// `(from, through]` (each 8 bytes big-endian), the previous checkpoint's
/// hash and the entries (per sealed event: its 8-byte cursor and the
/// SHA-256 of its [`event_bytes`]).
pub fn checkpoint_bytes(
    application_id: &str,
    seq: u64,
    from_cursor: u64,
    through_cursor: u64,
    prev_hash: &[u8],
    entries: &[u8],
) -> Vec<u8> {
    let mut fields = Fields::new(CHECKPOINT_LABEL);
    fields
        .push(application_id.as_bytes())
        .push(&seq.to_be_bytes())
        .push(&from_cursor.to_be_bytes())
        .push(&through_cursor.to_be_bytes())
        .push(prev_hash)
        .push(entries);
    fields.0
}

/// The id of an Ed25519 public key (a device's or the server's): the first
/// 16 bytes of its SHA-256, in lowercase hex.
pub fn key_id(public_key: &[u8]) -> String {
    Sha256::digest(public_key)[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_length_prefixed_after_the_label() {
        let bytes = hello_bytes("d", &[7, 8]);
        let mut expected = Vec::new();
        expected.extend_from_slice(&15u32.to_be_bytes());
        expected.extend_from_slice(b"assent.v1.hello");
        expected.extend_from_slice(&1u32.to_be_bytes());
        expected.extend_from_slice(b"d");
        expected.extend_from_slice(&2u32.to_be_bytes());
        expected.extend_from_slice(&[7, 8]);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn shifting_bytes_between_fields_changes_the_string() {
        assert_ne!(hello_bytes("ab", b"c"), hello_bytes("a", b"bc"));
    }

    #[test]
    fn display_hash_depends_on_every_context_pair() {
        let mut context = BTreeMap::new();
        context.insert("browser".to_owned(), "Firefox".to_owned());
        let with = display_hash("Log in?", &context);
        assert_ne!(with, display_hash("Log in?", &BTreeMap::new()));
        context.insert("browser".to_owned(), "Chrome".to_owned());
        assert_ne!(with, display_hash("Log in?", &context));
    }

    #[test]
    fn accept_and_deny_sign_different_bytes() {
        let hash = [0u8; 32];
        let payload = DecisionPayload {
            application_id: "a",
            transaction_id: "t",
            device_id: "d",
            nonce: &[1; 32],
            verdict: SignedVerdict::Accept,
            reason: "",
            display_hash: &hash,
            number: None,
        };
        let deny = DecisionPayload {
            verdict: SignedVerdict::Deny,
            ..payload
        };
        assert_ne!(decision_bytes(&payload), decision_bytes(&deny));
        let picked = DecisionPayload {
            number: Some(42),
            ..payload
        };
        assert_ne!(decision_bytes(&payload), decision_bytes(&picked));
    }
}

#[cfg(test)]
mod properties {
    //! The layouts are unambiguous: different decisions never share bytes,
    //! whatever their fields hold.

    use proptest::prelude::*;

    use super::*;

    /// Application, transaction and device ids, nonce, accept?, reason,
    /// display hash, picked number.
    type Fields8 = (
        String,
        String,
        String,
        Vec<u8>,
        bool,
        String,
        [u8; 32],
        Option<u32>,
    );

    fn payload() -> impl Strategy<Value = Fields8> {
        (
            ".{0,40}",
            ".{0,40}",
            ".{0,40}",
            prop::collection::vec(any::<u8>(), 0..40),
            any::<bool>(),
            ".{0,20}",
            any::<[u8; 32]>(),
            prop::option::of(0u32..200),
        )
    }

    fn bytes(p: &Fields8) -> Vec<u8> {
        decision_bytes(&DecisionPayload {
            application_id: &p.0,
            transaction_id: &p.1,
            device_id: &p.2,
            nonce: &p.3,
            verdict: if p.4 {
                SignedVerdict::Accept
            } else {
                SignedVerdict::Deny
            },
            reason: &p.5,
            display_hash: &p.6,
            number: p.7,
        })
    }

    proptest! {
        /// Every field is signed: changing any one of them (the others
        /// kept) changes the bytes. Leaving a field out of the layout makes
        /// this fail.
        #[test]
        fn a_decision_differing_in_one_field_signs_different_bytes(
            base in payload(), other in payload(), field in 0usize..8,
        ) {
            let mut changed = base.clone();
            match field {
                0 => changed.0 = other.0,
                1 => changed.1 = other.1,
                2 => changed.2 = other.2,
                3 => changed.3 = other.3,
                4 => changed.4 = !base.4,
                5 => changed.5 = other.5,
                6 => changed.6 = other.6,
                _ => changed.7 = other.7,
            }
            prop_assume!(changed != base);
            prop_assert_ne!(bytes(&base), bytes(&changed));
        }

        #[test]
        fn moving_a_boundary_between_fields_changes_the_bytes(
            id in ".{1,40}", challenge in prop::collection::vec(any::<u8>(), 1..40)
        ) {
            // "ab" + "c" and "a" + "bc" must not collide.
            let mut shifted_id = id.clone();
            let moved = shifted_id.pop().map(|c| c.to_string()).unwrap_or_default();
            let mut shifted_challenge = moved.into_bytes();
            shifted_challenge.extend_from_slice(&challenge);
            prop_assert_ne!(hello_bytes(&id, &challenge), hello_bytes(&shifted_id, &shifted_challenge));
        }

        #[test]
        fn display_hashes_differ_when_what_is_shown_differs(
            a in (".{0,30}", prop::collection::btree_map("[a-z]{1,5}", ".{0,10}", 0..4)),
            b in (".{0,30}", prop::collection::btree_map("[a-z]{1,5}", ".{0,10}", 0..4)),
        ) {
            prop_assume!(a != b);
            prop_assert_ne!(display_hash(&a.0, &a.1), display_hash(&b.0, &b.1));
        }
    }
}
