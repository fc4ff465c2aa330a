//! Webhook endpoints' rules (Standard Webhooks): which destinations are
//! allowed (https beyond loopback, no private or otherwise non-global
//! address unless the operator allows it), the `whsec_` secret and the
//! `v1,` signature over `{id}.{timestamp}.{body}`, the id of a delivery,
//! the retry schedule and when an endpoint that keeps failing is paused.
//! Pure: no I/O; the caller resolves names and passes the addresses.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use hmac::{KeyInit, Mac};
use rand::{CryptoRng, RngCore};
use sha2::Sha256;
use uuid::Uuid;

use super::ids::ApplicationId;
use super::input::InputError;

/// The first retry waits this long; each next one twice as long …
pub const FIRST_RETRY: Duration = Duration::seconds(1);
/// … up to this.
pub const MAX_RETRY: Duration = Duration::hours(1);
/// An endpoint failing without a success for this long is paused.
pub const FAILING_LIMIT: Duration = Duration::hours(24);
/// After a rotation the old secret also signs for this long.
pub const ROTATION_GRACE: Duration = Duration::hours(24);
/// Delivery log entries kept per endpoint.
pub const LOG_KEPT: i64 = 100;

/// One webhook endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WebhookId(pub Uuid);

impl WebhookId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// Parses the text form (`wh_` followed by a UUID, or the bare UUID).
    pub fn parse(text: &str) -> Result<Self, InputError> {
        let bare = text.strip_prefix("wh_").unwrap_or(text);
        Uuid::parse_str(bare)
            .map(Self)
            .map_err(|_| InputError::new("webhook_id", "must be a webhook id (wh_…)"))
    }
}

impl fmt::Display for WebhookId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "wh_{}", self.0)
    }
}

/// A destination that passed the scheme and host rules (not yet the
/// address rule: that needs the resolved addresses, see [`check_addresses`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

impl WebhookUrl {
    /// `https://…`, or `http://…` only to a loopback host; no user or
    /// password part, no fragment.
    pub fn parse(text: &str) -> Result<Self, InputError> {
        let bad = |why: &str| InputError::new("url", why);
        let url = url::Url::parse(text).map_err(|_| bad("must be an absolute https:// URL"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("must not carry a user name or password"));
        }
        if url.fragment().is_some() {
            return Err(bad("must not have a #fragment"));
        }
        let host = url.host().ok_or_else(|| bad("must name a host"))?;
        let loopback = match &host {
            url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
            url::Host::Ipv4(ip) => ip.is_loopback(),
            url::Host::Ipv6(ip) => ip.is_loopback(),
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => return Err(bad("must be https:// (http:// only to a loopback address)")),
        }
        Ok(Self(url))
    }

    /// The text form.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Whether it is `https`.
    pub fn is_https(&self) -> bool {
        self.0.scheme() == "https"
    }

    /// The host name or address literal (without IPv6 brackets).
    pub fn host(&self) -> String {
        match self.0.host() {
            Some(url::Host::Domain(name)) => name.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => String::new(),
        }
    }

    /// The port (the scheme's default if none is written).
    pub fn port(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or(443)
    }

    /// Path and query, as the request line carries them.
    pub fn path_and_query(&self) -> String {
        match self.0.query() {
            Some(query) => format!("{}?{query}", self.0.path()),
            None => self.0.path().to_owned(),
        }
    }
}

/// Why a destination's address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{host} resolves to {address}, a private, loopback, link-local or otherwise non-global \
     address; set webhook_allow_private = true to allow such destinations"
)]
pub struct NonGlobalAddress {
    /// The host as written.
    pub host: String,
    /// The refused address.
    pub address: IpAddr,
}

/// Refuses the destination if any address it resolves to is not global,
/// unless `allow_private`. Checked at creation and again before every
/// delivery (a name may resolve elsewhere later: DNS rebinding).
pub fn check_addresses(
    host: &str,
    addresses: &[IpAddr],
    allow_private: bool,
) -> Result<(), NonGlobalAddress> {
    if allow_private {
        return Ok(());
    }
    match addresses.iter().find(|ip| !is_global(**ip)) {
        Some(ip) => Err(NonGlobalAddress {
            host: host.to_owned(),
            address: *ip,
        }),
        None => Ok(()),
    }
}

/// Whether `ip` is a globally routable unicast address.
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_global_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_global_v4(v4),
            None => is_global_v6(v6),
        },
    }
}

fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_global_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || first == 0x0064 && ip.segments()[1] == 0xff9b // NAT64
        || ip.segments()[..5] == [0, 0, 0, 0, 0]) // IPv4-compatible and the like
}

/// An endpoint's signing secret: `whsec_` and the base64 of 32 random
/// bytes. A shared secret by design (the receiver verifies with it), so
/// the server stores it to sign; `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// A fresh secret.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        Self(format!("whsec_{}", STANDARD.encode(key)))
    }

    /// A stored secret; `None` if it is not `whsec_` and base64.
    pub fn from_stored(text: String) -> Option<Self> {
        let key = text.strip_prefix("whsec_")?;
        STANDARD.decode(key).ok().filter(|k| !k.is_empty())?;
        Some(Self(text))
    }

    /// The text form (to store, and to show once to the operator).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let key = self
            .0
            .strip_prefix("whsec_")
            .and_then(|k| STANDARD.decode(k).ok())
            .unwrap_or_default();
        let Ok(mut mac) = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&key) else {
            return String::new();
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

/// The `webhook-signature` header: the current secret's signature, and
/// during a rotation's grace period the previous one's too, space-separated.
pub fn signature_header(
    current: &WebhookSecret,
    previous: Option<&WebhookSecret>,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let mut header = current.sign(id, timestamp, body);
    if let Some(previous) = previous {
        header.push(' ');
        header.push_str(&previous.sign(id, timestamp, body));
    }
    header
}

/// The `webhook-id` of an application's event: the same on every retry,
/// so a receiver drops duplicates by it.
pub fn delivery_id(app: ApplicationId, cursor: i64) -> String {
    format!("evt_{}_{cursor}", app.as_uuid().simple())
}

/// When the next attempt after `failures` consecutive failures (≥ 1) is
/// due: 1 s doubling to 1 h, with up to a quarter of jitter (`jitter` in
/// `[0, 1)`) taken off so replicas and endpoints do not retry in step.
pub fn retry_delay(failures: u32, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    let base = FIRST_RETRY * 2i32.pow(doublings);
    let capped = base.min(MAX_RETRY);
    let millis = capped.num_milliseconds() as f64;
    let cut = (millis * 0.25 * jitter.clamp(0.0, 1.0)) as i64;
    Duration::milliseconds(capped.num_milliseconds() - cut)
}

/// Whether an endpoint failing since `failing_since` has failed too long
/// and is paused.
pub fn has_failed_too_long(failing_since: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now - failing_since >= FAILING_LIMIT
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn http_is_refused_beyond_loopback() {
        assert!(WebhookUrl::parse("http://127.0.0.1:8080/hook").is_ok());
        assert!(WebhookUrl::parse("http://localhost/hook").is_ok());
        assert!(WebhookUrl::parse("http://192.168.1.1/hook").is_err());
        assert!(WebhookUrl::parse("http://example.com/hook").is_err());
        assert!(WebhookUrl::parse("https://example.com/hook").is_ok());
        assert!(WebhookUrl::parse("https://user:pw@example.com/hook").is_err());
        assert!(WebhookUrl::parse("ftp://example.com/").is_err());
    }

    #[test]
    fn private_and_special_addresses_are_not_global() {
        for text in [
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert!(!is_global(ip), "{text}");
        }
        for text in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(is_global(text.parse().unwrap()), "{text}");
        }
    }

    #[test]
    fn a_private_address_is_refused_unless_allowed() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(check_addresses("h", &[ip], false).is_err());
        assert!(check_addresses("h", &[ip], true).is_ok());
    }

    #[test]
    fn signature_matches_the_standard_webhooks_test_vector() {
        // The vector of the standardwebhooks libraries' own tests.
        let secret =
            WebhookSecret::from_stored("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()).unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn retries_double_from_a_second_to_an_hour() {
        assert_eq!(retry_delay(1, 0.0), Duration::seconds(1));
        assert_eq!(retry_delay(2, 0.0), Duration::seconds(2));
        assert_eq!(retry_delay(40, 0.0), Duration::hours(1));
        assert!(retry_delay(3, 0.99) < Duration::seconds(4));
        assert!(retry_delay(3, 0.99) >= Duration::seconds(3));
    }

    #[test]
    fn an_endpoint_failing_for_a_day_is_paused() {
        let since = Utc::now();
        assert!(!has_failed_too_long(since, since + Duration::hours(23)));
        assert!(has_failed_too_long(since, since + Duration::hours(24)));
    }

    #[test]
    fn the_delivery_id_is_stable_per_event() {
        let app = ApplicationId::random();
        assert_eq!(delivery_id(app, 7), delivery_id(app, 7));
        assert_ne!(delivery_id(app, 7), delivery_id(app, 8));
        assert!(delivery_id(app, 7).starts_with("evt_"));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = WebhookSecret::generate(&mut crate::domain::secure_rng());
        assert_eq!(format!("{secret:?}"), "WebhookSecret(..)");
        assert!(secret.expose().starts_with("whsec_"));
    }
}
