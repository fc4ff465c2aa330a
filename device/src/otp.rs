//! OTP text as a user hands it in: checked locally (the token layout of
//! `assent_proto::token`, which the server reads too: base64 or base64url,
//! with or without padding, of a 16-byte transaction UUID and a 32-byte
//! secret) so the device knows which transaction an OTP belongs to before
//! the server says.

use std::fmt;

use uuid::Uuid;

/// A well-formed OTP; its text is sent to the server exactly as the user gave
/// it (trimmed), since the server accepts both alphabets too.
#[derive(Clone)]
pub struct Otp {
    text: String,
    transaction_id: String,
}

/// The OTP text does not decode to the documented 48-byte layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid OTP (malformed)")]
pub struct MalformedOtp;

impl Otp {
    /// Checks the layout and derives the transaction id.
    pub fn parse(raw: &str) -> Result<Self, MalformedOtp> {
        let text = raw.trim();
        let (id, _secret) = assent_proto::token::decode(text).ok_or(MalformedOtp)?;
        let uuid = Uuid::from_bytes(id);
        Ok(Self {
            text: text.to_owned(),
            transaction_id: uuid.hyphenated().to_string(),
        })
    }

    /// The OTP as the user gave it, without surrounding whitespace.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The transaction the OTP belongs to (lowercase hyphenated UUID).
    pub fn transaction_id(&self) -> &str {
        &self.transaction_id
    }
}

impl fmt::Debug for Otp {
    // The OTP is a bearer secret until it is used: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Otp")
            .field("transaction_id", &self.transaction_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    use super::*;

    const TX: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

    fn otp_bytes() -> Vec<u8> {
        let mut bytes = Uuid::parse_str(TX).unwrap().as_bytes().to_vec();
        // A secret whose encoding contains both `+`/`/` and so `-`/`_` in url form.
        bytes.extend((0..32u8).map(|i| i.wrapping_mul(37).wrapping_add(0xf8)));
        bytes
    }

    #[test]
    fn standard_base64_yields_the_transaction_id() {
        let text = STANDARD.encode(otp_bytes());
        let otp = Otp::parse(&text).unwrap();
        assert_eq!(otp.transaction_id(), TX);
        assert_eq!(otp.as_str(), text);
    }

    #[test]
    fn base64url_without_padding_is_accepted_and_sent_as_given() {
        let text = URL_SAFE_NO_PAD.encode(otp_bytes());
        assert!(text.contains('-') || text.contains('_'));
        let otp = Otp::parse(&format!("  {text}\n")).unwrap();
        assert_eq!(otp.transaction_id(), TX);
        assert_eq!(otp.as_str(), text);
    }

    #[test]
    fn stray_padding_is_tolerated() {
        let text = STANDARD.encode(otp_bytes());
        assert_eq!(
            Otp::parse(&format!("{text}==")).unwrap().transaction_id(),
            TX
        );
    }

    #[test]
    fn wrong_lengths_are_malformed() {
        for len in [0, 16, 47, 49, 64] {
            let text = STANDARD.encode(vec![7u8; len]);
            assert_eq!(Otp::parse(&text).unwrap_err(), MalformedOtp, "len {len}");
        }
    }

    #[test]
    fn non_base64_text_is_malformed() {
        assert!(Otp::parse("not an otp!").is_err());
        assert!(Otp::parse("").is_err());
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let text = STANDARD.encode(otp_bytes());
        let shown = format!("{:?}", Otp::parse(&text).unwrap());
        assert!(!shown.contains(&text));
        assert!(shown.contains(TX));
    }
}

#[cfg(test)]
mod properties {
    //! Whatever a user hands in, the OTP parser answers without panicking,
    //! and what it accepts names the transaction the bytes carry.

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_text_parses_or_is_malformed(text in prop_oneof!["[A-Za-z0-9+/=_ -]{0,90}", any::<String>()]) {
            if let Ok(otp) = Otp::parse(&text) {
                prop_assert_eq!(otp.as_str(), text.trim());
                prop_assert!(Uuid::parse_str(otp.transaction_id()).is_ok());
            }
        }

        #[test]
        fn well_formed_bytes_parse_to_their_transaction(bytes in any::<[u8; 48]>()) {
            let text = URL_SAFE_NO_PAD.encode(bytes);
            let otp = Otp::parse(&text);
            let expected = Uuid::from_slice(&bytes[..16]).map(|u| u.hyphenated().to_string());
            prop_assert_eq!(otp.map(|o| o.transaction_id().to_owned()).ok(), expected.ok());
        }
    }
}
