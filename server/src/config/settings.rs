//! Every setting of `assent-server` with its built-in default, and its
//! `Debug` with the database URL redacted.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "human" => Ok(Self::Human),
            "json" => Ok(Self::Json),
            _ => Err("expected `human` or `json`".to_owned()),
        }
    }
}

/// Every setting of `assent-server`, declared once here: the field name is
/// the TOML key, and `ASSENT_` + the upper-cased name is the environment
/// variable ([`ServerConfig::load`] layers defaults, the file and the
/// environment with `figment`, so a new field needs no other edit).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Prometheus metrics address (plain HTTP, `GET /metrics`); `None`
    /// (`off`) turns it off.
    #[serde(with = "address_or_off")]
    pub metrics_listen: Option<SocketAddr>,
    /// `postgres://user@host/db` selects PostgreSQL; `sqlite:PATH` a SQLite
    /// file; unset, the embedded SQLite file in `data_dir`.
    pub database_url: Option<String>,
    /// Where the embedded engine keeps its files.
    pub data_dir: Option<PathBuf>,
    /// PEM certificate chain for TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle for mutual TLS: when set, every connection must
    /// present a client certificate it signed.
    pub tls_client_ca: Option<PathBuf>,
    /// Allow plaintext on a non-loopback address.
    pub insecure_plaintext: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// How long events are kept, in seconds.
    pub event_retention_seconds: u64,
    /// Sustained creations per second per API key.
    pub create_rate_per_second: f64,
    /// Burst of creations per API key.
    pub create_burst: u32,
    /// How often the expiry sweeper runs, in milliseconds.
    pub sweep_interval_ms: u64,
    /// Database connection pool size.
    pub max_db_connections: u32,
    /// How long shutdown waits for in-flight RPCs, in seconds.
    pub drain_timeout_seconds: u64,
    /// Pushes to one user allowed within `push_window_seconds` without an accepted one.
    pub push_unanswered_limit: i64,
    /// The window of `push_unanswered_limit`, in seconds.
    pub push_window_seconds: u64,
    /// How long pushes to a user are blocked after a `not_me` denial, in seconds.
    pub fraud_cooldown_seconds: u64,
    /// Refused enrollment attempts one peer address may make at once.
    pub enroll_refusal_burst: u32,
    /// Refused enrollment attempts per minute one peer address regains.
    pub enroll_refusals_per_minute: f64,
    /// Refused API keys one source address may send at once.
    pub api_key_refusal_burst: u32,
    /// Refused API keys per minute one source address regains.
    pub api_key_refusals_per_minute: f64,
    /// How long a call waits for a database connection, in milliseconds.
    pub db_acquire_timeout_ms: u64,
    /// Longest a database statement may run (PostgreSQL), in milliseconds.
    pub db_statement_timeout_ms: u64,
    /// Deadline of a unary RPC (a shorter client deadline wins), in milliseconds.
    pub request_timeout_ms: u64,
    /// RPC handlers running at once; more are shed with UNAVAILABLE.
    pub max_concurrent_requests: usize,
    /// Open connections at most; more are closed at once.
    pub max_connections: usize,
    /// Open connections from one peer address at most.
    pub max_connections_per_peer: usize,
    /// How long a new connection may take to send its first request, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// How long a connection with no call in progress is kept, in seconds.
    pub idle_timeout_seconds: u64,
    /// How long a message to a device may wait for a device that does not read, in milliseconds.
    pub stream_send_timeout_ms: u64,
    /// Open `Subscribe` streams per API key on one replica.
    pub max_subscribers_per_key: usize,
    /// Whether webhook destinations may resolve to private, loopback,
    /// link-local and other non-global addresses (docs/webhooks.md).
    pub webhook_allow_private: bool,
    /// Webhook endpoints one replica delivers to at once.
    pub webhook_concurrency: usize,
    /// How long one webhook POST may take, in milliseconds.
    pub webhook_request_timeout_ms: u64,
    /// How long a replica holds an endpoint without renewing, in milliseconds.
    pub webhook_lease_ms: u64,
    /// How often a replica looks for endpoints with new events, in milliseconds.
    pub webhook_poll_ms: u64,
    /// The OpenID CIBA provider's listen address (plain HTTP, docs/ciba.md);
    /// `None` (`off`, the default) does not serve it.
    #[serde(with = "address_or_off")]
    pub oidc_listen: Option<SocketAddr>,
    /// The provider's public base URL, the ID tokens' `iss`; unset, it is
    /// `http://` + `oidc_listen`.
    pub issuer: Option<String>,
    /// Whether CIBA notification endpoints may resolve to private,
    /// loopback, link-local and other non-global addresses.
    pub oidc_allow_private: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            database_url: None,
            data_dir: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            insecure_plaintext: false,
            log_format: LogFormat::Human,
            event_retention_seconds: 7 * 24 * 3600,
            create_rate_per_second: 50.0,
            create_burst: 100,
            sweep_interval_ms: 1000,
            max_db_connections: 16,
            drain_timeout_seconds: 10,
            push_unanswered_limit: 5,
            push_window_seconds: 600,
            fraud_cooldown_seconds: 3600,
            enroll_refusal_burst: 10,
            enroll_refusals_per_minute: 10.0,
            api_key_refusal_burst: 20,
            api_key_refusals_per_minute: 20.0,
            db_acquire_timeout_ms: 3000,
            db_statement_timeout_ms: 3000,
            request_timeout_ms: 10000,
            max_concurrent_requests: 512,
            max_connections: 4096,
            max_connections_per_peer: 256,
            handshake_timeout_ms: 10000,
            idle_timeout_seconds: 300,
            stream_send_timeout_ms: 20000,
            max_subscribers_per_key: 64,
            webhook_allow_private: false,
            webhook_concurrency: 8,
            webhook_request_timeout_ms: 10_000,
            webhook_lease_ms: 10_000,
            webhook_poll_ms: 500,
            oidc_listen: None,
            issuer: None,
            oidc_allow_private: false,
        }
    }
}

impl fmt::Debug for ServerConfig {
    /// Every field, the database URL redacted (it may hold a password).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut fields = serde_json::to_value(self).unwrap_or_default();
        if let Some(url) = fields.get_mut("database_url").filter(|url| !url.is_null()) {
            *url = serde_json::Value::from("<redacted>");
        }
        write!(f, "ServerConfig {fields}")
    }
}

/// `metrics_listen`, `oidc_listen`: an address, or `off` (or empty) for none.
mod address_or_off {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(addr) => s.collect_str(addr),
            None => s.serialize_str("off"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        match text.trim() {
            "" | "off" => Ok(None),
            addr => addr.parse().map(Some).map_err(|error| {
                serde::de::Error::custom(format!(
                    "{error} (use an address like 127.0.0.1:9464, or `off`)"
                ))
            }),
        }
    }
}
