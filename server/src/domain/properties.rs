//! Property tests over every parser of untrusted input in the domain: OTPs,
//! enrollment codes and API keys in any text, the input types and context
//! maps. Whatever arrives, a parser answers without panicking, and what it
//! accepts keeps the type's promise. (Failing cases are kept by proptest
//! under `proptest-regressions/`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use unicode_normalization::UnicodeNormalization;

use super::text::check_plain;
use super::*;

/// Text that often looks like a token: base64 letters, padding, separators.
fn token_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9+/=_-]{0,100}",
        "ak_[A-Za-z0-9_-]{0,80}",
        any::<String>(),
    ]
}

proptest! {
    #[test]
    fn secret_parsers_never_panic(text in token_like()) {
        let _ = Otp::parse(&text);
        let _ = EnrollmentCode::parse(&text);
        let _ = ApiKey::parse(&text);
    }

    #[test]
    fn a_generated_otp_parses_back_in_either_alphabet_with_or_without_padding(seed in any::<u64>()) {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
        let otp = Otp::generate(&mut rng, TransactionId::random());
        let text = otp.expose();
        let url_safe: String = text.chars().map(|c| match c { '+' => '-', '/' => '_', c => c }).collect();
        for variant in [text.clone(), text.trim_end_matches('=').to_owned(), url_safe] {
            let parsed = Otp::parse(&variant).unwrap();
            prop_assert_eq!(parsed.id(), otp.id());
            prop_assert!(parsed.matches(&otp.hash()));
        }
    }

    #[test]
    fn a_flipped_character_never_matches_the_stored_hash(seed in any::<u64>(), at in 0usize..64) {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
        let otp = Otp::generate(&mut rng, TransactionId::random());
        let mut text: Vec<char> = otp.expose().chars().collect();
        let at = at % text.len();
        text[at] = if text[at] == 'A' { 'B' } else { 'A' };
        let changed: String = text.into_iter().collect();
        if let Ok(parsed) = Otp::parse(&changed) {
            prop_assert!(parsed.id() != otp.id() || !parsed.matches(&otp.hash()));
        }
    }

    #[test]
    fn accepted_text_is_plain_bounded_and_nfc(text in any::<String>()) {
        for (parsed, max) in [
            (Message::parse(&text).map(|m| m.as_str().to_owned()), 200),
            (UserId::parse(&text).map(|u| u.as_str().to_owned()), 128),
            (DeviceName::parse(&text).map(|d| d.as_str().to_owned()), 64),
        ] {
            if let Ok(value) = parsed {
                let length = value.chars().count();
                prop_assert!((1..=max).contains(&length));
                prop_assert!(check_plain("text", &value).is_ok());
                prop_assert_eq!(value.nfc().collect::<String>(), value);
            }
        }
    }

    #[test]
    fn accepted_contexts_keep_their_limits(
        pairs in prop::collection::btree_map(any::<String>(), any::<String>(), 0..20)
    ) {
        if let Ok(context) = Context::parse(pairs) {
            prop_assert!(context.pairs().len() <= Context::MAX_PAIRS);
            for (key, value) in context.pairs() {
                prop_assert!((1..=Context::MAX_KEY).contains(&key.len()));
                prop_assert!(key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b)));
                prop_assert!(value.chars().count() <= Context::MAX_VALUE);
                prop_assert!(check_plain("value", value).is_ok());
            }
        }
    }

    #[test]
    fn ids_and_reasons_parse_or_refuse(text in any::<String>()) {
        let _ = TransactionId::parse(&text);
        let _ = DenyReason::parse(&text);
        let _ = transaction::Reason::parse(&text);
        let _ = EventType::parse(&text);
        let _ = TransactionState::parse(&text);
    }
}

#[test]
fn a_context_with_a_bad_key_names_it() {
    let pairs: BTreeMap<String, String> = [("Bad Key".to_owned(), "v".to_owned())].into();
    let error = Context::parse(pairs)
        .err()
        .map(|e| e.problem)
        .unwrap_or_default();
    assert!(error.contains("Bad Key"), "{error}");
}
