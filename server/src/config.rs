//! Typed settings, layered: built-in defaults → TOML file → `ASSENT_*`
//! environment → command-line flags (applied by `main`). `Debug` redacts the
//! database URL, which may carry a password.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
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

/// Every setting of `assent-server`. Field names are the TOML keys; the
/// environment variable is `ASSENT_` + the upper-cased name.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Prometheus metrics address (plain HTTP, `GET /metrics`); `None` turns it off.
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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("metrics_listen", &self.metrics_listen)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "<redacted>"),
            )
            .field("data_dir", &self.data_dir)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("insecure_plaintext", &self.insecure_plaintext)
            .field("log_format", &self.log_format)
            .field("event_retention_seconds", &self.event_retention_seconds)
            .field("create_rate_per_second", &self.create_rate_per_second)
            .field("create_burst", &self.create_burst)
            .field("sweep_interval_ms", &self.sweep_interval_ms)
            .field("max_db_connections", &self.max_db_connections)
            .field("drain_timeout_seconds", &self.drain_timeout_seconds)
            .field("push_unanswered_limit", &self.push_unanswered_limit)
            .field("push_window_seconds", &self.push_window_seconds)
            .field("fraud_cooldown_seconds", &self.fraud_cooldown_seconds)
            .field("enroll_refusal_burst", &self.enroll_refusal_burst)
            .field(
                "enroll_refusals_per_minute",
                &self.enroll_refusals_per_minute,
            )
            .field("db_acquire_timeout_ms", &self.db_acquire_timeout_ms)
            .field("db_statement_timeout_ms", &self.db_statement_timeout_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("max_concurrent_requests", &self.max_concurrent_requests)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_peer", &self.max_connections_per_peer)
            .field("handshake_timeout_ms", &self.handshake_timeout_ms)
            .field("idle_timeout_seconds", &self.idle_timeout_seconds)
            .field("stream_send_timeout_ms", &self.stream_send_timeout_ms)
            .field("max_subscribers_per_key", &self.max_subscribers_per_key)
            .finish()
    }
}

/// Overwrites `field` from variable `name` when it is set.
fn from_env<T: FromStr>(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    field: &mut T,
) -> Result<(), ConfigError>
where
    T::Err: fmt::Display,
{
    if let Some(value) = env(name) {
        *field = value.parse().map_err(|error: T::Err| ConfigError::Env {
            name: name.to_owned(),
            message: error.to_string(),
        })?;
    }
    Ok(())
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

    /// Defaults, then `file` if given, then the environment as read by `env`.
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str(&text).map_err(|error| ConfigError::Parse {
                    path: path.to_owned(),
                    message: error.to_string(),
                })?
            }
            None => Self::default(),
        };
        from_env(env, "ASSENT_LISTEN", &mut config.listen)?;
        if let Some(value) = env("ASSENT_METRICS_LISTEN") {
            config.metrics_listen =
                match value.as_str() {
                    "" | "off" => None,
                    addr => Some(addr.parse().map_err(|e: std::net::AddrParseError| {
                        ConfigError::Env {
                            name: "ASSENT_METRICS_LISTEN".to_owned(),
                            message: format!("{e} (use an address like 127.0.0.1:9464, or `off`)"),
                        }
                    })?),
                };
        }
        let optional = |name: &str, field: &mut Option<String>| {
            if let Some(value) = env(name).filter(|v| !v.is_empty()) {
                *field = Some(value);
            }
        };
        optional("ASSENT_DATABASE_URL", &mut config.database_url);
        let (mut cert, mut key, mut data_dir) = (None, None, None);
        optional("ASSENT_TLS_CERT", &mut cert);
        optional("ASSENT_TLS_KEY", &mut key);
        optional("ASSENT_DATA_DIR", &mut data_dir);
        config.data_dir = data_dir.map(PathBuf::from).or(config.data_dir);
        config.tls_cert = cert.map(PathBuf::from).or(config.tls_cert);
        config.tls_key = key.map(PathBuf::from).or(config.tls_key);
        from_env(
            env,
            "ASSENT_INSECURE_PLAINTEXT",
            &mut config.insecure_plaintext,
        )?;
        from_env(env, "ASSENT_LOG_FORMAT", &mut config.log_format)?;
        from_env(
            env,
            "ASSENT_EVENT_RETENTION_SECONDS",
            &mut config.event_retention_seconds,
        )?;
        from_env(
            env,
            "ASSENT_CREATE_RATE_PER_SECOND",
            &mut config.create_rate_per_second,
        )?;
        from_env(env, "ASSENT_CREATE_BURST", &mut config.create_burst)?;
        from_env(
            env,
            "ASSENT_SWEEP_INTERVAL_MS",
            &mut config.sweep_interval_ms,
        )?;
        from_env(
            env,
            "ASSENT_MAX_DB_CONNECTIONS",
            &mut config.max_db_connections,
        )?;
        from_env(
            env,
            "ASSENT_DRAIN_TIMEOUT_SECONDS",
            &mut config.drain_timeout_seconds,
        )?;
        from_env(
            env,
            "ASSENT_PUSH_UNANSWERED_LIMIT",
            &mut config.push_unanswered_limit,
        )?;
        from_env(
            env,
            "ASSENT_PUSH_WINDOW_SECONDS",
            &mut config.push_window_seconds,
        )?;
        from_env(
            env,
            "ASSENT_FRAUD_COOLDOWN_SECONDS",
            &mut config.fraud_cooldown_seconds,
        )?;
        from_env(
            env,
            "ASSENT_ENROLL_REFUSAL_BURST",
            &mut config.enroll_refusal_burst,
        )?;
        from_env(
            env,
            "ASSENT_ENROLL_REFUSALS_PER_MINUTE",
            &mut config.enroll_refusals_per_minute,
        )?;
        from_env(
            env,
            "ASSENT_DB_ACQUIRE_TIMEOUT_MS",
            &mut config.db_acquire_timeout_ms,
        )?;
        from_env(
            env,
            "ASSENT_DB_STATEMENT_TIMEOUT_MS",
            &mut config.db_statement_timeout_ms,
        )?;
        from_env(
            env,
            "ASSENT_REQUEST_TIMEOUT_MS",
            &mut config.request_timeout_ms,
        )?;
        from_env(
            env,
            "ASSENT_MAX_CONCURRENT_REQUESTS",
            &mut config.max_concurrent_requests,
        )?;
        from_env(env, "ASSENT_MAX_CONNECTIONS", &mut config.max_connections)?;
        from_env(
            env,
            "ASSENT_MAX_CONNECTIONS_PER_PEER",
            &mut config.max_connections_per_peer,
        )?;
        from_env(
            env,
            "ASSENT_HANDSHAKE_TIMEOUT_MS",
            &mut config.handshake_timeout_ms,
        )?;
        from_env(
            env,
            "ASSENT_IDLE_TIMEOUT_SECONDS",
            &mut config.idle_timeout_seconds,
        )?;
        from_env(
            env,
            "ASSENT_STREAM_SEND_TIMEOUT_MS",
            &mut config.stream_send_timeout_ms,
        )?;
        from_env(
            env,
            "ASSENT_MAX_SUBSCRIBERS_PER_KEY",
            &mut config.max_subscribers_per_key,
        )?;
        Ok(config)
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
    fn debug_redacts_the_database_url() {
        let env = env_of(&[("ASSENT_DATABASE_URL", "postgres://u:hunter2@h/db")]);
        let config = ServerConfig::load(None, &env).ok();
        assert!(config.is_some_and(|c| !format!("{c:?}").contains("hunter2")));
    }
}
