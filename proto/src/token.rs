//! The text form of Assent's 48-byte tokens — OTPs, enrollment codes and the
//! body of API keys: a 16-byte public id followed by a 32-byte secret,
//! written in base64. Writers pick an alphabet ([`Alphabet`]); readers
//! accept both alphabets, padded or not, so a code survives being retyped,
//! URL-encoded or copied from a QR code. The server and the device side both
//! read tokens through this module.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};

/// Bytes of the public id part.
pub const ID_LEN: usize = 16;
/// Bytes of the secret part.
pub const SECRET_LEN: usize = 32;
/// Bytes of a whole token.
pub const TOKEN_LEN: usize = ID_LEN + SECRET_LEN;

/// How a token is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    /// Standard base64, padded (64 characters): OTPs, as login pages show them.
    Standard,
    /// URL-safe base64 without padding (64 characters): enrollment codes and
    /// API keys.
    UrlSafe,
}

/// Writes `id` and `secret` as token text.
///
/// ```
/// use assent_proto::token::{self, Alphabet};
/// let text = token::encode(&[1; 16], &[2; 32], Alphabet::UrlSafe);
/// assert_eq!(text.len(), 64);
/// assert_eq!(token::decode(&text), Some(([1; 16], [2; 32])));
/// ```
pub fn encode(id: &[u8; ID_LEN], secret: &[u8; SECRET_LEN], alphabet: Alphabet) -> String {
    let mut bytes = [0u8; TOKEN_LEN];
    bytes[..ID_LEN].copy_from_slice(id);
    bytes[ID_LEN..].copy_from_slice(secret);
    match alphabet {
        Alphabet::Standard => STANDARD.encode(bytes),
        Alphabet::UrlSafe => URL_SAFE_NO_PAD.encode(bytes),
    }
}

/// Reads token text in either alphabet, padded or not, surrounding white
/// space ignored; `None` unless it decodes to exactly [`TOKEN_LEN`] bytes.
pub fn decode(text: &str) -> Option<([u8; ID_LEN], [u8; SECRET_LEN])> {
    // base64url letters map one-to-one onto the standard alphabet.
    let normalised: String = text
        .trim()
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            other => other,
        })
        .collect();
    let bytes = STANDARD_NO_PAD.decode(normalised).ok()?;
    if bytes.len() != TOKEN_LEN {
        return None;
    }
    let (id, secret) = bytes.split_at(ID_LEN);
    Some((id.try_into().ok()?, secret.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn every_written_form_reads_back(id: [u8; ID_LEN], secret: [u8; SECRET_LEN]) {
            for alphabet in [Alphabet::Standard, Alphabet::UrlSafe] {
                let text = encode(&id, &secret, alphabet);
                prop_assert_eq!(decode(&text), Some((id, secret)));
                prop_assert_eq!(decode(text.trim_end_matches('=')), Some((id, secret)));
                prop_assert_eq!(decode(&format!("  {text}\n")), Some((id, secret)));
            }
        }
    }

    #[test]
    fn other_lengths_and_letters_are_refused() {
        assert_eq!(decode(""), None);
        assert_eq!(decode(&STANDARD.encode([0u8; TOKEN_LEN - 1])), None);
        assert_eq!(decode(&STANDARD.encode([0u8; TOKEN_LEN + 1])), None);
        assert_eq!(decode("not base64 !!"), None);
    }
}
