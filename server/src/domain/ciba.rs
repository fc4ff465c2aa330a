//! OpenID CIBA's rules in domain terms: how a client gets its result
//! ([`DeliveryMode`]), which algorithm signs its ID tokens ([`IdTokenAlg`]),
//! the `auth_req_id` (a random secret of which only the hash is stored), the
//! requested expiry's bounds and when a poll comes too soon. No HTTP, no
//! SQL, no JWT here.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

/// The shortest and longest `requested_expiry`, as push TTLs.
pub const EXPIRY_BOUNDS: (u64, u64) = (10, 600);

/// The default expiry when a client asks for none (the push default).
pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(120);

/// The least time between two polls of one request.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Notification attempts before delivery is given up: retried after 1 s,
/// doubling to a minute (jittered), so about half an hour of retries — well
/// past the longest request (600 s); a ping client may still poll after.
pub const NOTIFY_ATTEMPTS: i64 = 40;

/// The wait before the next notification attempt after `attempts` failed
/// ones (1 s doubling to 60 s; `jitter` in [0, 1] takes up to a quarter
/// off, so replicas and clients do not retry in step).
pub fn notify_retry_delay(attempts: i64, jitter: f64) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 6)).unwrap_or(6);
    let base = Duration::from_secs(1u64 << doublings).min(Duration::from_secs(60));
    base.mul_f64(1.0 - 0.25 * jitter.clamp(0.0, 1.0))
}

/// How a CIBA client learns the outcome (CIBA Core §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// The client polls the token endpoint.
    Poll,
    /// The server pings the client's endpoint; the client then fetches.
    Ping,
    /// The server posts the tokens to the client's endpoint.
    Push,
}

impl DeliveryMode {
    /// Its name in OpenID metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Ping => "ping",
            Self::Push => "push",
        }
    }

    /// Parses a name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "poll" => Some(Self::Poll),
            "ping" => Some(Self::Ping),
            "push" => Some(Self::Push),
            _ => None,
        }
    }

    /// Whether the server calls the client's notification endpoint.
    pub fn is_notified(self) -> bool {
        !matches!(self, Self::Poll)
    }

    /// Whether the client may fetch tokens from the token endpoint.
    pub fn may_poll(self) -> bool {
        !matches!(self, Self::Push)
    }
}

/// The algorithm that signs a client's ID tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IdTokenAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (OpenID's mandatory default).
    Rs256,
    /// Ed25519.
    EdDsa,
    /// ECDSA P-256 with SHA-256.
    Es256,
}

impl IdTokenAlg {
    /// Every algorithm offered, the default first.
    pub const ALL: [Self; 3] = [Self::Rs256, Self::EdDsa, Self::Es256];

    /// Its JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
        }
    }

    /// Parses a JOSE name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

/// An `auth_req_id`: 256 random bits, base64url; only its hash is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthReqId(String);

impl std::fmt::Debug for AuthReqId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthReqId(…)")
    }
}

impl AuthReqId {
    /// A fresh one.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Parses what a client sent (43 base64url characters); `None` for
    /// anything else, which is then unknown like any wrong id.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        (bytes.len() == 32).then(|| Self(text.to_owned()))
    }

    /// Its text, given to the client once.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What is stored and looked up: SHA-256 of the text.
    pub fn hash(&self) -> Vec<u8> {
        Sha256::digest(self.0.as_bytes()).to_vec()
    }
}

/// Why a requested expiry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("requested_expiry must be a whole number of seconds from 10 to 600")]
pub struct BadExpiry;

/// Parses `requested_expiry` (seconds, as text or a JSON number), within
/// [`EXPIRY_BOUNDS`]; none is [`DEFAULT_EXPIRY`].
pub fn requested_expiry(text: Option<&str>) -> Result<Duration, BadExpiry> {
    let Some(text) = text else {
        return Ok(DEFAULT_EXPIRY);
    };
    let seconds: u64 = text.trim().parse().map_err(|_| BadExpiry)?;
    if !(EXPIRY_BOUNDS.0..=EXPIRY_BOUNDS.1).contains(&seconds) {
        return Err(BadExpiry);
    }
    Ok(Duration::from_secs(seconds))
}

/// A poll at `now` is on time if the last one was at or before this
/// instant (the store applies it as the guard of the poll's write, so two
/// replicas cannot both let a fast client through).
pub fn poll_allowed_after(now: DateTime<Utc>, interval: Duration) -> DateTime<Utc> {
    now - chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX)
}

/// The `at_hash` of `access_token` for an ID token signed with `alg`
/// (OIDC Core §3.1.3.6): the left half of the token's hash, base64url —
/// SHA-256 for RS256 and ES256, SHA-512 for EdDSA over Ed25519 (the hash
/// Ed25519 uses, as OpenID's registry says for EdDSA).
pub fn at_hash(alg: IdTokenAlg, access_token: &str) -> String {
    let digest = match alg {
        IdTokenAlg::Rs256 | IdTokenAlg::Es256 => Sha256::digest(access_token).to_vec(),
        IdTokenAlg::EdDsa => sha2::Sha512::digest(access_token).to_vec(),
    };
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

/// Whether `token` is a usable `client_notification_token` (CIBA Core
/// §7.1: at most 1024 characters, with 128 bits of entropy — we can only
/// check a floor of 16 characters — printable ASCII, since it becomes a
/// bearer token).
pub fn is_notification_token(token: &str) -> bool {
    (16..=1024).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn auth_req_id_round_trips_and_hashes_stably() {
        let id = AuthReqId::generate(&mut crate::domain::secure_rng());
        let parsed = AuthReqId::parse(id.as_str()).unwrap();
        assert_eq!(parsed.hash(), id.hash());
        assert_eq!(id.hash().len(), 32);
        assert!(AuthReqId::parse("short").is_none());
    }

    #[test]
    fn requested_expiry_is_bounded_like_push_ttls() {
        assert_eq!(requested_expiry(None), Ok(DEFAULT_EXPIRY));
        assert_eq!(requested_expiry(Some("10")), Ok(Duration::from_secs(10)));
        assert_eq!(requested_expiry(Some("600")), Ok(Duration::from_secs(600)));
        assert_eq!(requested_expiry(Some("9")), Err(BadExpiry));
        assert_eq!(requested_expiry(Some("601")), Err(BadExpiry));
        assert_eq!(requested_expiry(Some("1.5")), Err(BadExpiry));
    }

    #[test]
    fn push_clients_may_not_poll_and_poll_clients_are_not_notified() {
        assert!(!DeliveryMode::Push.may_poll());
        assert!(DeliveryMode::Ping.may_poll() && DeliveryMode::Ping.is_notified());
        assert!(!DeliveryMode::Poll.is_notified());
        assert_eq!(DeliveryMode::parse("ping"), Some(DeliveryMode::Ping));
        assert_eq!(IdTokenAlg::parse("EdDSA"), Some(IdTokenAlg::EdDsa));
    }

    #[test]
    fn at_hash_is_the_left_half_of_the_algorithms_hash() {
        // Computed independently (Python's hashlib, base64url of the left
        // half of the digest).
        let token = "dNZX1hEZ9wBCzNL40Upu646bdzQA";
        assert_eq!(at_hash(IdTokenAlg::Rs256, token), "wfgvmE9VxjAudsl9lc6TqA");
        assert_eq!(at_hash(IdTokenAlg::Es256, token), "wfgvmE9VxjAudsl9lc6TqA");
        assert_eq!(
            at_hash(IdTokenAlg::EdDsa, token),
            "8xltSlOGYrWy8W9yNvRlEth1i_bXW-JROWPLvCv5zog"
        );
    }

    #[test]
    fn notification_retries_double_to_a_minute_and_jitter_only_shortens() {
        assert_eq!(notify_retry_delay(1, 0.0), Duration::from_secs(1));
        assert_eq!(notify_retry_delay(2, 0.0), Duration::from_secs(2));
        assert_eq!(notify_retry_delay(7, 0.0), Duration::from_secs(60));
        assert_eq!(notify_retry_delay(39, 0.0), Duration::from_secs(60));
        assert_eq!(notify_retry_delay(1, 1.0), Duration::from_millis(750));
        let total: Duration = (1..NOTIFY_ATTEMPTS)
            .map(|n| notify_retry_delay(n, 0.0))
            .sum();
        assert!(total > Duration::from_secs(1_800), "{total:?}");
    }

    #[test]
    fn notification_tokens_need_length_and_printable_ascii() {
        assert!(is_notification_token("0123456789abcdef"));
        assert!(!is_notification_token("short"));
        assert!(!is_notification_token("0123456789 abcdef"));
    }
}
