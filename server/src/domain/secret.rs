//! High-entropy single-use secrets: OTPs, enrollment codes and API keys.
//!
//! Each is a 16-byte public id (how the server finds the row, so it never
//! scans) followed by a 32-byte secret from a CSPRNG. Only the SHA-256 of
//! the secret part is stored, and the comparison is constant-time. `Debug`
//! never prints the secret.

use std::fmt;

use assent_proto::token::{self, Alphabet};
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ids::{ApiKeyId, EnrollmentId, TransactionId};
use super::input::InputError;

use assent_proto::token::{ID_LEN, SECRET_LEN};

/// SHA-256 of a secret part; what the database holds instead of the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// Wraps a hash read from storage; `None` when it has the wrong length.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The hash bytes, for storage.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

/// The id and secret bytes shared by every kind of token.
#[derive(Clone)]
struct Token {
    id: [u8; ID_LEN],
    secret: [u8; SECRET_LEN],
}

impl Token {
    fn generate<R: RngCore + CryptoRng>(rng: &mut R, id: [u8; ID_LEN]) -> Self {
        let mut secret = [0u8; SECRET_LEN];
        rng.fill_bytes(&mut secret);
        Self { id, secret }
    }

    /// Reads token text (either base64 alphabet, padded or not).
    fn parse(text: &str) -> Option<Self> {
        token::decode(text).map(|(id, secret)| Self { id, secret })
    }

    fn encode(&self, alphabet: Alphabet) -> String {
        token::encode(&self.id, &self.secret, alphabet)
    }

    fn hash(&self) -> SecretHash {
        SecretHash(Sha256::digest(self.secret).into())
    }

    fn matches(&self, stored: &SecretHash) -> bool {
        self.hash().0.ct_eq(&stored.0).into()
    }
}

macro_rules! secret_kind {
    ($(#[$doc:meta])* $name:ident, $id:ident, $field:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(Token);

        impl $name {
            /// A fresh token for `id` with 256 random secret bits.
            pub fn generate<R: RngCore + CryptoRng>(rng: &mut R, id: $id) -> Self {
                Self(Token::generate(rng, *id.as_uuid().as_bytes()))
            }

            /// The public id part.
            pub fn id(&self) -> $id {
                $id::from_bytes(self.0.id)
            }

            /// The hash to store.
            pub fn hash(&self) -> SecretHash {
                self.0.hash()
            }

            /// Constant-time check against a stored hash.
            pub fn matches(&self, stored: &SecretHash) -> bool {
                self.0.matches(stored)
            }

            fn malformed() -> InputError {
                InputError::new($field, concat!("is not a well-formed ", $what))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}, ..)", stringify!($name), self.id())
            }
        }
    };
}

secret_kind!(
    /// The one-time password of an OTP transaction; standard base64 on the wire.
    Otp,
    TransactionId,
    "otp",
    "OTP (expected 64 base64 characters)"
);
secret_kind!(
    /// A single-use enrollment code; base64url without padding.
    EnrollmentCode,
    EnrollmentId,
    "code",
    "enrollment code (expected 64 base64url characters)"
);
secret_kind!(
    /// An application's API key: `ak_` and base64url without padding.
    ApiKey,
    ApiKeyId,
    "api_key",
    "API key (expected `ak_` and 64 base64url characters)"
);

impl Otp {
    /// Parses base64 or base64url, with or without padding.
    pub fn parse(text: &str) -> Result<Self, InputError> {
        Token::parse(text).map(Self).ok_or_else(Self::malformed)
    }

    /// The text shown on the login page (standard base64, padded).
    pub fn expose(&self) -> String {
        self.0.encode(Alphabet::Standard)
    }
}

impl EnrollmentCode {
    /// Parses the code text (either base64 alphabet is accepted).
    pub fn parse(text: &str) -> Result<Self, InputError> {
        Token::parse(text).map(Self).ok_or_else(Self::malformed)
    }

    /// The text given to the user.
    pub fn expose(&self) -> String {
        self.0.encode(Alphabet::UrlSafe)
    }
}

impl ApiKey {
    const PREFIX: &'static str = "ak_";

    /// Parses `ak_…` key text.
    pub fn parse(text: &str) -> Result<Self, InputError> {
        text.trim()
            .strip_prefix(Self::PREFIX)
            .and_then(Token::parse)
            .map(Self)
            .ok_or_else(Self::malformed)
    }

    /// The key text, shown once to the operator.
    pub fn expose(&self) -> String {
        format!("{}{}", Self::PREFIX, self.0.encode(Alphabet::UrlSafe))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    fn otp() -> Otp {
        Otp::generate(&mut rand::rng(), TransactionId::random())
    }

    #[test]
    fn otp_text_is_64_standard_base64_characters() {
        let text = otp().expose();
        assert_eq!(text.len(), 64);
        assert!(STANDARD.decode(&text).is_ok());
    }

    #[test]
    fn otp_parses_from_base64url_without_padding() {
        let otp = otp();
        let url = otp.0.encode(Alphabet::UrlSafe);
        let parsed = Otp::parse(&url);
        assert!(parsed.is_ok_and(|p| p.id() == otp.id() && p.matches(&otp.hash())));
    }

    #[test]
    fn malformed_otps_are_refused() {
        assert!(Otp::parse("not base64 !!").is_err());
        assert!(Otp::parse(&STANDARD.encode([0u8; 47])).is_err());
        assert!(Otp::parse("").is_err());
    }

    #[test]
    fn a_different_secret_does_not_match() {
        let a = otp();
        let mut forged = a.clone();
        forged.0.secret[0] ^= 1;
        assert!(a.matches(&a.hash()));
        assert!(!forged.matches(&a.hash()));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let otp = otp();
        let debug = format!("{otp:?}");
        assert!(!debug.contains(&otp.expose()));
        assert!(debug.contains(&otp.id().to_string()));
    }

    #[test]
    fn api_key_round_trips_and_requires_prefix() {
        let key = ApiKey::generate(&mut rand::rng(), ApiKeyId::random());
        let text = key.expose();
        assert!(text.starts_with("ak_"));
        assert!(ApiKey::parse(&text).is_ok_and(|k| k.id() == key.id()));
        assert!(ApiKey::parse(&text[3..]).is_err());
    }

    #[test]
    fn enrollment_code_round_trips() {
        let code = EnrollmentCode::generate(&mut rand::rng(), EnrollmentId::random());
        let parsed = EnrollmentCode::parse(&code.expose());
        assert!(parsed.is_ok_and(|c| c.id() == code.id() && c.matches(&code.hash())));
    }
}
