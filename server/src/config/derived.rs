//! What the settings select and bound: the storage engine and data
//! directory, plaintext refusal, and the limits each part of the server takes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::ServerConfig;
use crate::domain::push::PushLimits;
use crate::service::ServiceLimits;
use crate::store::PgLimits;

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

impl ServerConfig {
    /// Whether serving plaintext on `addr` is refused: beyond loopback,
    /// only with TLS or when explicitly allowed.
    pub fn refuses_plaintext_on(&self, addr: SocketAddr) -> bool {
        let has_tls = self.tls_cert.is_some() && self.tls_key.is_some();
        !has_tls && !addr.ip().is_loopback() && !self.insecure_plaintext
    }

    /// The CIBA provider's issuer URL: `issuer`, or `http://` (`https://`
    /// with a certificate) + the address it is bound to (without a
    /// trailing slash).
    pub fn oidc_issuer(&self, bound: SocketAddr) -> String {
        match &self.issuer {
            Some(issuer) => issuer.trim_end_matches('/').to_owned(),
            None if self.tls_cert.is_some() => format!("https://{bound}"),
            None => format!("http://{bound}"),
        }
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
            api_key_refusal_burst: self.api_key_refusal_burst,
            api_key_refusals_per_second: self.api_key_refusals_per_minute / 60.0,
            max_subscribers_per_key: self.max_subscribers_per_key,
        }
    }
}
