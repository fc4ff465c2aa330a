//! Raw strings from the wire become these types at the boundary; inside the
//! server their invariants always hold (SPEC §6 limits).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Why a piece of input was refused: which field, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InputError {
    /// The request field at fault.
    pub field: &'static str,
    /// What is wrong, phrased so a person can fix it.
    pub problem: String,
}

impl InputError {
    /// An error about `field`.
    pub fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }
}

/// Checks length in Unicode scalar values and that the text is plain (see
/// [`super::text`]); returns it normalised to NFC.
fn bounded_text(
    field: &'static str,
    text: &str,
    min: usize,
    max: usize,
) -> Result<String, InputError> {
    let text = super::text::plain(field, text)?;
    let len = text.chars().count();
    if len < min {
        return Err(InputError::new(field, "must not be empty"));
    }
    if len > max {
        return Err(InputError::new(
            field,
            format!("is {len} characters long; at most {max} are allowed"),
        ));
    }
    Ok(text)
}

macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl TryFrom<String> for $name {
            type Error = InputError;

            fn try_from(text: String) -> Result<Self, InputError> {
                Self::parse(&text)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl $name {
            /// Parses input, refusing empty, overlong or control-character text.
            pub fn parse(text: &str) -> Result<Self, InputError> {
                bounded_text($field, text, 1, $max).map(Self)
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_type!(
    /// The application's own id of one of its users (1–128 characters).
    UserId,
    "user_id",
    128
);
text_type!(
    /// The question shown on the device (1–200 characters).
    Message,
    "message",
    200
);
text_type!(
    /// A device's display name (1–64 characters).
    DeviceName,
    "device_name",
    64
);

/// Extra facts shown on the device: at most 16 pairs, keys of `[a-z0-9_.-]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context(BTreeMap<String, String>);

impl Context {
    /// Most pairs a context may hold.
    pub const MAX_PAIRS: usize = 16;
    /// Longest key, in characters.
    pub const MAX_KEY: usize = 64;
    /// Longest value, in characters.
    pub const MAX_VALUE: usize = 256;

    /// Parses a map from the wire.
    pub fn parse(pairs: BTreeMap<String, String>) -> Result<Self, InputError> {
        if pairs.len() > Self::MAX_PAIRS {
            return Err(InputError::new(
                "context",
                format!(
                    "has {} pairs; at most {} are allowed",
                    pairs.len(),
                    Self::MAX_PAIRS
                ),
            ));
        }
        let mut plain = BTreeMap::new();
        for (key, value) in pairs {
            let key_ok = (1..=Self::MAX_KEY).contains(&key.len())
                && key
                    .bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'));
            if !key_ok {
                return Err(InputError::new(
                    "context",
                    format!(
                        "key {key:?} must be 1-{} characters of a-z, 0-9, '_', '.', '-'",
                        Self::MAX_KEY
                    ),
                ));
            }
            let value = super::text::plain("context", &value)?;
            if value.chars().count() > Self::MAX_VALUE {
                return Err(InputError::new(
                    "context",
                    format!(
                        "value of {key:?} must be at most {} characters",
                        Self::MAX_VALUE
                    ),
                ));
            }
            plain.insert(key, value);
        }
        Ok(Self(plain))
    }

    /// The pairs, in key order.
    pub fn pairs(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// Consumes the context into its pairs.
    pub fn into_pairs(self) -> BTreeMap<String, String> {
        self.0
    }
}

/// A relying party's opaque session binding (1–64 bytes), stored with a
/// transaction and carried by its events under the server's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding(Vec<u8>);

impl Binding {
    /// Longest binding, in bytes.
    pub const MAX: usize = 64;

    /// Parses the optional binding of a request; empty means none.
    pub fn parse(bytes: &[u8]) -> Result<Option<Self>, InputError> {
        if bytes.len() > Self::MAX {
            return Err(InputError::new(
                "binding",
                format!(
                    "is {} bytes; at most {} are allowed (send a hash of the session id)",
                    bytes.len(),
                    Self::MAX
                ),
            ));
        }
        Ok((!bytes.is_empty()).then(|| Self(bytes.to_vec())))
    }

    /// The bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// Allowed lifetimes of short-lived secrets.
#[derive(Debug, Clone, Copy)]
pub struct TtlRule {
    field: &'static str,
    default: u32,
    min: u32,
    max: u32,
}

/// OTP transactions: default 120 s, allowed 10–600 s.
pub const OTP_TTL: TtlRule = TtlRule {
    field: "ttl_seconds",
    default: 120,
    min: 10,
    max: 600,
};

/// Enrollment codes: default 10 min, allowed 1 min–24 h.
pub const ENROLLMENT_TTL: TtlRule = TtlRule {
    field: "ttl_seconds",
    default: 600,
    min: 60,
    max: 86_400,
};

/// The default wait of `WaitTransaction`, in milliseconds.
pub const DEFAULT_WAIT_MS: u32 = 25_000;
/// The longest wait of `WaitTransaction`, in milliseconds.
pub const MAX_WAIT_MS: u32 = 60_000;

/// Parses a `WaitTransaction` timeout in milliseconds, 0 meaning the default.
pub fn wait_timeout(ms: u32) -> Result<Duration, InputError> {
    let ms = if ms == 0 { DEFAULT_WAIT_MS } else { ms };
    if ms > MAX_WAIT_MS {
        return Err(InputError::new(
            "timeout_ms",
            format!(
                "must be at most {MAX_WAIT_MS} ms (0 for the default {DEFAULT_WAIT_MS}); wait \
                 again after a timeout"
            ),
        ));
    }
    Ok(Duration::from_millis(u64::from(ms)))
}

impl TtlRule {
    /// Parses a requested TTL in seconds, 0 meaning the default.
    pub fn parse(&self, seconds: u32) -> Result<Duration, InputError> {
        let seconds = if seconds == 0 { self.default } else { seconds };
        if !(self.min..=self.max).contains(&seconds) {
            return Err(InputError::new(
                self.field,
                format!(
                    "must be between {} and {} seconds (0 for the default {})",
                    self.min, self.max, self.default
                ),
            ));
        }
        Ok(Duration::from_secs(u64::from(seconds)))
    }
}

/// Why a device denied a login (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// The user did not try to log in: possible fraud.
    NotMe,
    /// The user changed their mind.
    CancelledByUser,
    /// The device's policy refused.
    Policy,
}

impl DenyReason {
    /// Parses the optional reason of a denial; empty means none.
    pub fn parse(text: &str) -> Result<Option<Self>, InputError> {
        match text {
            "" => Ok(None),
            "not_me" => Ok(Some(Self::NotMe)),
            "cancelled_by_user" => Ok(Some(Self::CancelledByUser)),
            "policy" => Ok(Some(Self::Policy)),
            _ => Err(InputError::new(
                "reason",
                "must be empty, \"not_me\", \"cancelled_by_user\" or \"policy\"",
            )),
        }
    }

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotMe => "not_me",
            Self::CancelledByUser => "cancelled_by_user",
            Self::Policy => "policy",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_length_counts_scalar_values_not_bytes() {
        assert!(Message::parse(&"ü".repeat(200)).is_ok());
        assert!(Message::parse(&"ü".repeat(201)).is_err());
    }

    #[test]
    fn control_characters_are_refused() {
        let err = Message::parse("Log in?\n").err();
        assert!(err.is_some_and(|e| e.problem.contains("control")));
        assert!(UserId::parse("al\u{1b}[31mice").is_err());
    }

    #[test]
    fn empty_and_overlong_user_ids_are_refused() {
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse(&"u".repeat(128)).is_ok());
        assert!(UserId::parse(&"u".repeat(129)).is_err());
    }

    #[test]
    fn context_keys_are_restricted() {
        let ok: BTreeMap<_, _> = [("browser.name".to_owned(), "Firefox".to_owned())].into();
        assert!(Context::parse(ok).is_ok());
        let upper: BTreeMap<_, _> = [("Browser".to_owned(), "x".to_owned())].into();
        assert!(Context::parse(upper).is_err());
        let empty: BTreeMap<_, _> = [(String::new(), "x".to_owned())].into();
        assert!(Context::parse(empty).is_err());
    }

    #[test]
    fn context_pair_count_is_bounded() {
        let many: BTreeMap<_, _> = (0..17).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        assert!(Context::parse(many).is_err());
    }

    #[test]
    fn ttl_zero_means_default_and_range_is_enforced() {
        assert_eq!(OTP_TTL.parse(0), Ok(Duration::from_secs(120)));
        assert!(OTP_TTL.parse(9).is_err());
        assert!(OTP_TTL.parse(601).is_err());
        assert_eq!(
            ENROLLMENT_TTL.parse(86_400),
            Ok(Duration::from_secs(86_400))
        );
        assert!(ENROLLMENT_TTL.parse(86_401).is_err());
    }

    #[test]
    fn deny_reasons_round_trip() {
        for reason in [
            DenyReason::NotMe,
            DenyReason::CancelledByUser,
            DenyReason::Policy,
        ] {
            assert_eq!(DenyReason::parse(reason.as_str()), Ok(Some(reason)));
        }
        assert!(DenyReason::parse("because").is_err());
    }
}
