//! The command line: flags, subcommands and how they layer over the
//! configuration file and the `ASSENT_*` variables.

use std::path::PathBuf;

use anyhow::Context as _;
use assent_server::ServerConfig;
use assent_server::config::LogFormat;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "assent-server",
    version,
    about,
    after_help = "Every setting can also come from the TOML file (--config, ASSENT_CONFIG) and \
                  an ASSENT_* variable; order: defaults, file, environment, flags. The full list \
                  with defaults is docs/configuration.md."
)]
pub struct Cli {
    /// TOML config file (keys as in docs/configuration.md).
    #[arg(long, env = "ASSENT_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// PostgreSQL URL, e.g. postgres://postgres@127.0.0.1:5432/assent
    /// [env: ASSENT_DATABASE_URL] [default: the embedded SQLite file in the
    /// data directory].
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Directory of the embedded SQLite store [env: ASSENT_DATA_DIR]
    /// [default: ~/.local/share/assent].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Log format [env: ASSENT_LOG_FORMAT] [default: human]; the level comes
    /// from RUST_LOG (default: info when serving, warn for other commands).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// The serving settings, also accepted before the subcommand (and with
    /// none, which serves).
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Settings only serving reads (`serve`, or no subcommand).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// gRPC listen address [env: ASSENT_LISTEN] [default: 127.0.0.1:50051].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Prometheus metrics address [env: ASSENT_METRICS_LISTEN] [default:
    /// 127.0.0.1:9464; `off` disables].
    #[arg(long)]
    metrics_listen: Option<String>,
    /// PEM certificate chain for TLS [env: ASSENT_TLS_CERT].
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS [env: ASSENT_TLS_KEY].
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// PEM CA bundle: every connection must then present a client
    /// certificate it signed (mutual TLS) [env: ASSENT_TLS_CLIENT_CA].
    #[arg(long)]
    tls_client_ca: Option<PathBuf>,
    /// Allow plaintext gRPC on a non-loopback address (e.g. behind a TLS
    /// proxy) [env: ASSENT_INSECURE_PLAINTEXT=true].
    #[arg(long)]
    insecure_plaintext: bool,
    /// The OpenID CIBA provider's address (plain HTTP; docs/ciba.md)
    /// [env: ASSENT_OIDC_LISTEN] [default: off].
    #[arg(long)]
    oidc_listen: Option<String>,
}

impl ServeArgs {
    /// These settings, where `later` (given after `serve`) wins.
    fn or(self, later: Self) -> Self {
        Self {
            listen: later.listen.or(self.listen),
            metrics_listen: later.metrics_listen.or(self.metrics_listen),
            tls_cert: later.tls_cert.or(self.tls_cert),
            tls_key: later.tls_key.or(self.tls_key),
            tls_client_ca: later.tls_client_ca.or(self.tls_client_ca),
            insecure_plaintext: later.insecure_plaintext || self.insecure_plaintext,
            oidc_listen: later.oidc_listen.or(self.oidc_listen),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve gRPC (the default).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Manage applications (relying parties).
    #[command(subcommand)]
    App(AppCommand),
    /// The server's event-signing keys (shared by every replica).
    #[command(subcommand)]
    Keys(ServerKeysCommand),
    /// The tamper-evident record of every application's events.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Ask a running server whether it serves (grpc.health.v1), for
    /// container and load-balancer health checks: exit 0 only if SERVING.
    Health {
        /// The server to ask [default: http://127.0.0.1:PORT, PORT from
        /// the configured listen address].
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Give up after this many seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 3)]
        timeout: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute each application's chain of signed checkpoints from the
    /// event rows as they are now; exit 1 naming the first event that was
    /// changed, removed or inserted (or the checkpoint that was altered).
    Verify {
        /// Only this application (default: every application).
        #[arg(long, value_name = "ID")]
        application: Option<String>,
        /// Seal new events first (the server does so every 2 s).
        #[arg(long)]
        seal: bool,
        /// Print one JSON object per application: {"application_id","ok",
        /// "checkpoints","events_verified","events_purged","events_unsealed",
        /// "finding"} (finding null or {"kind","cursor"|"seq","message"}).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServerKeysCommand {
    /// List the signing keys, newest first (public parts only).
    List {
        /// Print a JSON array of `{"key_id","public_key","created_at","retired_at"}`
        /// (public_key in hex).
        #[arg(long)]
        json: bool,
    },
    /// Make a new signing key current; the old one is retired but stays
    /// published, so what it signed still verifies. Replicas switch within 30 s.
    Rotate {
        /// Print `{"key_id","public_key"}` (hex).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Create an application and print its API key (shown only once).
    Create {
        /// Display name shown on devices, e.g. "Example Shop".
        #[arg(long)]
        name: String,
        /// Print `{"app_id","api_key","name"}`.
        #[arg(long)]
        json: bool,
    },
    /// List applications.
    List {
        /// Print a JSON array of `{"app_id","name","created_at"}`.
        #[arg(long)]
        json: bool,
    },
    /// Manage an application's API keys (rotate: create, deploy, revoke).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage an application's Standard Webhooks endpoints (docs/webhooks.md).
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Set how an application gets OpenID CIBA results (docs/ciba.md).
    /// Notification endpoints are `https://` only, except to loopback;
    /// private destinations need oidc_allow_private.
    Ciba {
        /// The application's id (`app list`), the CIBA `client_id`.
        #[arg(long)]
        app: String,
        /// Token delivery mode.
        #[arg(long, value_parser = ["poll", "ping", "push"])]
        mode: String,
        /// Where ping and push notifications are POSTed (required for them).
        #[arg(long, value_name = "URL")]
        notification_endpoint: Option<String>,
        /// The ID tokens' signing algorithm.
        #[arg(long, default_value = "RS256", value_parser = ["RS256", "EdDSA", "ES256"])]
        alg: String,
        /// Print `{"app_id","mode","notification_endpoint","alg"}`.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Add an endpoint that receives the application's events from now on,
    /// and print its signing secret (shown only once). `https://` only,
    /// except to loopback; private destinations need webhook_allow_private.
    Create {
        /// The application's id (`app list`).
        #[arg(long)]
        app: String,
        /// Where events are POSTed, e.g. https://shop.example/hooks/assent.
        #[arg(long)]
        url: String,
        /// Print `{"webhook_id","app_id","url","secret"}`.
        #[arg(long)]
        json: bool,
    },
    /// List the application's endpoints: position, state, pause reason.
    List {
        /// The application's id.
        #[arg(long)]
        app: String,
        /// Print a JSON array of `{"webhook_id","app_id","url","delivered_through",
        /// "failures","failing_since","next_attempt_at","paused","paused_at",
        /// "pause_reason","created_at"}`.
        #[arg(long)]
        json: bool,
    },
    /// Stop deliveries to an endpoint; its position is kept.
    Pause {
        /// The application's id.
        #[arg(long)]
        app: String,
        /// The endpoint's id (`app webhook list`).
        #[arg(long)]
        id: String,
        /// Print `{"webhook_id","app_id","paused":true}`.
        #[arg(long)]
        json: bool,
    },
    /// Deliver again from the endpoint's position (failures forgotten).
    Resume {
        /// The application's id.
        #[arg(long)]
        app: String,
        /// The endpoint's id.
        #[arg(long)]
        id: String,
        /// Print `{"webhook_id","app_id","resumed":true}`.
        #[arg(long)]
        json: bool,
    },
    /// Give the endpoint a new secret; the old one also signs for 24 h.
    Rotate {
        /// The application's id.
        #[arg(long)]
        app: String,
        /// The endpoint's id.
        #[arg(long)]
        id: String,
        /// Print `{"webhook_id","app_id","secret"}`.
        #[arg(long)]
        json: bool,
    },
    /// Delete an endpoint and its delivery log.
    Delete {
        /// The application's id.
        #[arg(long)]
        app: String,
        /// The endpoint's id.
        #[arg(long)]
        id: String,
        /// Print `{"webhook_id","app_id","deleted":true}`.
        #[arg(long)]
        json: bool,
    },
    /// The endpoint's newest delivery attempts (the last 100 are kept).
    Log {
        /// The application's id.
        #[arg(long)]
        app: String,
        /// The endpoint's id.
        #[arg(long)]
        id: String,
        /// How many, newest first (at most 100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Print a JSON array of `{"attempted_at","event_id","status","error","latency_ms"}`.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Add an API key to an application and print it (shown only once).
    Create {
        /// The application's id (`app list`).
        #[arg(long)]
        app: String,
        /// Print `{"app_id","key_id","api_key"}`.
        #[arg(long)]
        json: bool,
    },
    /// List an application's keys (ids and dates, never the keys).
    List {
        /// The application's id.
        #[arg(long)]
        app: String,
        /// Print a JSON array of `{"key_id","created_at","revoked_at"}`.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: calls with it fail at once, its event streams end.
    Revoke {
        /// The application's id.
        #[arg(long)]
        app: String,
        /// The key's id (`app key list`) or the key itself.
        key: String,
        /// Print `{"app_id","key_id","revoked":true}`.
        #[arg(long)]
        json: bool,
    },
}

impl Cli {
    pub fn config(&self) -> anyhow::Result<ServerConfig> {
        let mut config = ServerConfig::load(self.config.as_deref(), &ServerConfig::process_env)?;
        let serve = match &self.command {
            Some(Command::Serve(args)) => self.serve.clone().or(args.clone()),
            _ => self.serve.clone(),
        };
        if let Some(listen) = serve.listen {
            config.listen = listen;
        }
        if let Some(metrics) = &serve.metrics_listen {
            config.metrics_listen = match metrics.as_str() {
                "off" => None,
                addr => Some(
                    addr.parse()
                        .context("--metrics-listen takes an address or `off`")?,
                ),
            };
        }
        if let Some(url) = &self.database_url {
            config.database_url = Some(url.clone());
        }
        if self.data_dir.is_some() {
            config.data_dir.clone_from(&self.data_dir);
        }
        if serve.tls_cert.is_some() {
            config.tls_cert.clone_from(&serve.tls_cert);
        }
        if serve.tls_key.is_some() {
            config.tls_key.clone_from(&serve.tls_key);
        }
        if serve.tls_client_ca.is_some() {
            config.tls_client_ca.clone_from(&serve.tls_client_ca);
        }
        config.insecure_plaintext |= serve.insecure_plaintext;
        if let Some(oidc) = &serve.oidc_listen {
            config.oidc_listen = match oidc.as_str() {
                "off" => None,
                addr => Some(
                    addr.parse()
                        .context("--oidc-listen takes an address or `off`")?,
                ),
            };
        }
        if let Some(format) = self.log_format {
            config.log_format = format;
        }
        config.check()?;
        Ok(config)
    }
}
