//! Typed settings, layered: built-in defaults → TOML file → `ASSENT_*`
//! environment → command-line flags (applied by `main`). `Debug` redacts the
//! database URL, which may carry a password.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::push::PushLimits;
use crate::service::ServiceLimits;
use crate::store::PgLimits;

/// A bad setting, named by where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML for these settings.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An environment variable has a value of the wrong form.
    #[error("environment variable {name} has an invalid value: {message}")]
    Env {
        /// The variable.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The database URL names no engine Assent has.
    #[error(
        "the database URL starts with {scheme:?}, which is no engine Assent has; use \
         postgres://USER@HOST/DB (or postgresql://), sqlite:///PATH, or no URL for the embedded \
         file (ASSENT_DATABASE_URL, --database-url, database_url)"
    )]
    DatabaseUrl {
        /// What the URL started with (never the URL: it may hold a password).
        scheme: String,
    },
}

/// File name of the embedded database inside the data directory.
pub const SQLITE_FILE: &str = "assent.db";

/// Which storage engine serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// PostgreSQL at this URL (may carry a password: never log it).
    Postgres {
        /// The URL.
        url: String,
    },
    /// The embedded SQLite file.
    Sqlite {
        /// The file.
        path: PathBuf,
    },
}

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

/// `metrics_listen`: an address, or `off` (or empty) for none.
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

impl ServerConfig {
    /// Checks the settings every command reads: the database URL's engine.
    pub fn check(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.database_url {
            let scheme = url
                .split_once(':')
                .map_or(url.as_str(), |(scheme, _)| scheme);
            if !matches!(scheme, "postgres" | "postgresql" | "sqlite") {
                return Err(ConfigError::DatabaseUrl {
                    scheme: scheme.chars().take(20).collect(),
                });
            }
        }
        Ok(())
    }

    /// Whether serving plaintext on `addr` is refused: beyond loopback,
    /// only with TLS or when explicitly allowed.
    pub fn refuses_plaintext_on(&self, addr: SocketAddr) -> bool {
        let has_tls = self.tls_cert.is_some() && self.tls_key.is_some();
        !has_tls && !addr.ip().is_loopback() && !self.insecure_plaintext
    }

    /// Defaults, then `file` if given, then the environment as read by
    /// `env` (`ASSENT_` + the upper-cased key of every field; empty values
    /// count as unset), layered by `figment`.
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        use figment::Figment;
        use figment::providers::{Format as _, Serialized, Toml};
        let defaults = Self::default();
        let mut figment = Figment::from(Serialized::defaults(&defaults));
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            // Checked alone first, so an error names the file.
            figment
                .clone()
                .merge(Toml::string(&text))
                .extract::<Self>()
                .map_err(|error| ConfigError::Parse {
                    path: path.to_owned(),
                    message: error.to_string(),
                })?;
            figment = figment.merge(Toml::string(&text));
        }
        for key in Self::keys(&defaults) {
            let name = format!("ASSENT_{}", key.to_uppercase());
            let Some(value) = env(&name).filter(|value| !value.is_empty()) else {
                continue;
            };
            let parsed: figment::value::Value =
                value.parse().unwrap_or_else(|never| match never {});
            // A value that looks like a number or a boolean but belongs to
            // a text setting stays text.
            let layered = figment.clone().merge(Serialized::default(&key, parsed));
            figment = match layered.extract::<Self>() {
                Ok(_) => layered,
                Err(_) => {
                    let text = figment.clone().merge(Serialized::default(&key, &value));
                    text.extract::<Self>().map_err(|error| ConfigError::Env {
                        name: name.clone(),
                        message: error.kind.to_string(),
                    })?;
                    text
                }
            };
        }
        figment.extract().map_err(|error| ConfigError::Parse {
            path: file.map(Path::to_owned).unwrap_or_default(),
            message: error.to_string(),
        })
    }

    /// The name of every setting.
    fn keys(defaults: &Self) -> Vec<String> {
        match serde_json::to_value(defaults) {
            Ok(serde_json::Value::Object(fields)) => fields.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Reads `ASSENT_*` from the process environment.
    pub fn process_env(name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    /// The storage engine these settings select.
    pub fn engine(&self) -> Engine {
        match self.database_url.as_deref() {
            Some(url) if url.starts_with("sqlite:") => {
                let path = url
                    .trim_start_matches("sqlite:")
                    .trim_start_matches("//")
                    .split('?')
                    .next()
                    .unwrap_or_default();
                Engine::Sqlite {
                    path: PathBuf::from(path),
                }
            }
            Some(url) => Engine::Postgres {
                url: url.to_owned(),
            },
            None => Engine::Sqlite {
                path: self.data_dir().join(SQLITE_FILE),
            },
        }
    }

    /// The data directory: configured, else `$XDG_DATA_HOME/assent`, else
    /// `$HOME/.local/share/assent`, else `./assent-data`.
    pub fn data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        env("XDG_DATA_HOME")
            .map(|base| PathBuf::from(base).join("assent"))
            .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".local/share/assent")))
            .unwrap_or_else(|| PathBuf::from("assent-data"))
    }

    /// The bounds on connections.
    pub fn connection_limits(&self) -> crate::grpc::connection::ConnectionLimits {
        crate::grpc::connection::ConnectionLimits {
            max_connections: self.max_connections,
            max_per_peer: self.max_connections_per_peer,
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            idle_timeout: Duration::from_secs(self.idle_timeout_seconds),
        }
    }

    /// The PostgreSQL pool's bounds.
    pub fn pg_limits(&self) -> PgLimits {
        PgLimits {
            max_connections: self.max_db_connections,
            acquire_timeout: Duration::from_millis(self.db_acquire_timeout_ms),
            statement_timeout: Duration::from_millis(self.db_statement_timeout_ms),
        }
    }

    /// The use-case limits these settings describe.
    pub fn limits(&self) -> ServiceLimits {
        ServiceLimits {
            create_per_second: self.create_rate_per_second,
            create_burst: self.create_burst,
            event_retention: Duration::from_secs(self.event_retention_seconds),
            push: PushLimits {
                unanswered: self.push_unanswered_limit,
                window: Duration::from_secs(self.push_window_seconds),
                fraud_cooldown: Duration::from_secs(self.fraud_cooldown_seconds),
            },
            enroll_refusal_burst: self.enroll_refusal_burst,
            enroll_refusals_per_second: self.enroll_refusals_per_minute / 60.0,
            max_subscribers_per_key: self.max_subscribers_per_key,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_listen_on_loopback_only() {
        let config = ServerConfig::load(None, &env_of(&[])).ok();
        assert!(config.is_some_and(|c| c.listen.ip().is_loopback() && !c.insecure_plaintext));
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("assent-config-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("server.toml");
        let written = std::fs::write(&path, "create_burst = 7\nsweep_interval_ms = 250\n");
        assert!(written.is_ok());
        let config = ServerConfig::load(Some(&path), &env_of(&[("ASSENT_CREATE_BURST", "9")]));
        let config = config.ok();
        assert_eq!(config.as_ref().map(|c| c.create_burst), Some(9));
        assert_eq!(config.map(|c| c.sweep_interval_ms), Some(250));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let error = ServerConfig::load(None, &env_of(&[("ASSENT_LISTEN", "nowhere")])).err();
        assert!(error.is_some_and(|e| e.to_string().contains("ASSENT_LISTEN")));
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("assent-config-u-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("server.toml");
        assert!(std::fs::write(&path, "listne = \"127.0.0.1:1\"\n").is_ok());
        assert!(ServerConfig::load(Some(&path), &env_of(&[])).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn engine_is_sqlite_in_the_data_dir_unless_a_url_says_otherwise() {
        let env = env_of(&[("ASSENT_DATA_DIR", "/srv/assent")]);
        let config = ServerConfig::load(None, &env).ok();
        assert_eq!(
            config.map(|c| c.engine()),
            Some(Engine::Sqlite {
                path: PathBuf::from("/srv/assent/assent.db")
            })
        );
        let env = env_of(&[("ASSENT_DATABASE_URL", "postgres://u@h/db")]);
        let config = ServerConfig::load(None, &env).ok();
        assert!(matches!(
            config.map(|c| c.engine()),
            Some(Engine::Postgres { .. })
        ));
        let env = env_of(&[("ASSENT_DATABASE_URL", "sqlite:///tmp/x.db")]);
        let config = ServerConfig::load(None, &env).ok();
        assert_eq!(
            config.map(|c| c.engine()),
            Some(Engine::Sqlite {
                path: PathBuf::from("/tmp/x.db")
            })
        );
    }

    #[test]
    fn every_setting_is_read_from_its_variable() {
        let defaults = ServerConfig::default();
        let fields = serde_json::to_value(&defaults).unwrap_or_default();
        let mut checked = 0;
        for key in ServerConfig::keys(&defaults) {
            let changed = match &fields[&key] {
                serde_json::Value::Number(n) if n.is_u64() => {
                    (n.as_u64().unwrap_or(0) + 1).to_string()
                }
                serde_json::Value::Number(n) => format!("{}", n.as_f64().unwrap_or(0.0) + 0.5),
                serde_json::Value::Bool(b) => (!b).to_string(),
                _ => continue,
            };
            let name = format!("ASSENT_{}", key.to_uppercase());
            let config = ServerConfig::load(None, &env_of(&[(name.as_str(), changed.as_str())]));
            let read = serde_json::to_value(config.ok()).unwrap_or_default();
            assert_ne!(read[&key], fields[&key], "{name} was not read");
            checked += 1;
        }
        assert!(checked >= 20, "only {checked} numeric or boolean settings");
        let off = ServerConfig::load(None, &env_of(&[("ASSENT_METRICS_LISTEN", "off")]));
        assert!(off.is_ok_and(|c| c.metrics_listen.is_none()));
    }

    #[test]
    fn debug_redacts_the_database_url() {
        let env = env_of(&[("ASSENT_DATABASE_URL", "postgres://u:hunter2@h/db")]);
        let config = ServerConfig::load(None, &env).ok();
        assert!(config.is_some_and(|c| !format!("{c:?}").contains("hunter2")));
    }
}
