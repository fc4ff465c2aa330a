//! `assent-server`: parse arguments, load configuration, start telemetry, run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use assent_server::config::LogFormat;
use assent_server::domain::ApplicationId;
use assent_server::{ServerConfig, admin, open_store, shutdown, telemetry};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// The Assent authentication server.
#[derive(Debug, Parser)]
#[command(
    name = "assent-server",
    version,
    about,
    after_help = "Every setting can also come from the TOML file (--config, ASSENT_CONFIG) and \
                  an ASSENT_* variable; order: defaults, file, environment, flags. The full list \
                  with defaults is docs/configuration.md."
)]
struct Cli {
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
    command: Option<Command>,
}

/// Settings only serving reads (`serve`, or no subcommand).
#[derive(Debug, Clone, Default, clap::Args)]
struct ServeArgs {
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
    /// Allow plaintext gRPC on a non-loopback address (e.g. behind a TLS
    /// proxy) [env: ASSENT_INSECURE_PLAINTEXT=true].
    #[arg(long)]
    insecure_plaintext: bool,
}

impl ServeArgs {
    /// These settings, where `later` (given after `serve`) wins.
    fn or(self, later: Self) -> Self {
        Self {
            listen: later.listen.or(self.listen),
            metrics_listen: later.metrics_listen.or(self.metrics_listen),
            tls_cert: later.tls_cert.or(self.tls_cert),
            tls_key: later.tls_key.or(self.tls_key),
            insecure_plaintext: later.insecure_plaintext || self.insecure_plaintext,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
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
enum AuditCommand {
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
enum ServerKeysCommand {
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
enum AppCommand {
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
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
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
    fn config(&self) -> anyhow::Result<ServerConfig> {
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
        config.insecure_plaintext |= serve.insecure_plaintext;
        if let Some(format) = self.log_format {
            config.log_format = format;
        }
        config.check()?;
        Ok(config)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config()?;
    let serving = matches!(cli.command, None | Some(Command::Serve(_)));
    telemetry::init(config.log_format, if serving { "info" } else { "warn" });
    // tonic's TLS and sqlx use rustls; pin the ring provider before first use.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(_) => serve(config).await,
        Command::Migrate => {
            open_store(&config).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::App(AppCommand::Create { name, json }) => {
            let store = open_store(&config).await?.store;
            let (app, key) = admin::create_application(store.as_ref(), &name).await?;
            if json {
                let key_id = admin::key_id(&key)
                    .map(|id| id.to_string())
                    .unwrap_or_default();
                let out = serde_json::json!({"app_id": app.id.to_string(), "key_id": key_id, "api_key": key, "name": app.name});
                println!("{out}");
            } else {
                println!("Created application \"{}\" ({})", app.name, app.id);
                println!("API key (shown only now; store it safely):\n  {key}");
                println!("Try:\n  export ASSENT_API_KEY={key}");
            }
            Ok(())
        }
        Command::App(AppCommand::Key(command)) => key_command(&config, command).await,
        Command::Keys(command) => server_keys_command(&config, command).await,
        Command::Health { url, timeout } => {
            let url = url.unwrap_or_else(|| format!("http://127.0.0.1:{}", config.listen.port()));
            health(&url, std::time::Duration::from_secs(timeout)).await
        }
        Command::Audit(AuditCommand::Verify {
            application,
            seal,
            json,
        }) => audit_verify(&config, application.as_deref(), seal, json).await,
        Command::App(AppCommand::List { json }) => {
            let store = open_store(&config).await?.store;
            let apps = store.list_applications().await?;
            if json {
                let out: Vec<_> = apps
                    .iter()
                    .map(|a| serde_json::json!({"app_id": a.id.to_string(), "name": a.name, "created_at": a.created_at.to_rfc3339()}))
                    .collect();
                println!("{}", serde_json::Value::Array(out));
            } else {
                for app in apps {
                    println!("{}  {}  {}", app.id, app.created_at.to_rfc3339(), app.name);
                }
            }
            Ok(())
        }
    }
}

async fn key_command(config: &ServerConfig, command: KeyCommand) -> anyhow::Result<()> {
    let parse_app = |text: &str| {
        ApplicationId::parse(text).context("--app takes an application id (see `app list`)")
    };
    let store = open_store(config).await?.store;
    match command {
        KeyCommand::Create { app, json } => {
            let app = parse_app(&app)?;
            let (key_id, key) = admin::add_api_key(store.as_ref(), app).await?;
            if json {
                let out = serde_json::json!({"app_id": app.to_string(), "key_id": key_id.to_string(), "api_key": key});
                println!("{out}");
            } else {
                println!("Added key {key_id} to application {app}");
                println!("API key (shown only now; store it safely):\n  {key}");
            }
        }
        KeyCommand::List { app, json } => {
            let keys = store.list_api_keys(parse_app(&app)?).await?;
            if json {
                let out: Vec<_> = keys
                    .iter()
                    .map(|k| serde_json::json!({"key_id": k.id.to_string(), "created_at": k.created_at.to_rfc3339(), "revoked_at": k.revoked_at.map(|t| t.to_rfc3339())}))
                    .collect();
                println!("{}", serde_json::Value::Array(out));
            } else {
                for key in keys {
                    let state = key.revoked_at.map_or_else(
                        || "active".to_owned(),
                        |t| format!("revoked {}", t.to_rfc3339()),
                    );
                    println!("{}  {}  {state}", key.id, key.created_at.to_rfc3339());
                }
            }
        }
        KeyCommand::Revoke { app, key, json } => {
            let app = parse_app(&app)?;
            let key_id = admin::key_id(&key)?;
            admin::revoke_api_key(store.as_ref(), app, key_id).await?;
            if json {
                let out = serde_json::json!({"app_id": app.to_string(), "key_id": key_id.to_string(), "revoked": true});
                println!("{out}");
            } else {
                println!("Revoked key {key_id} of application {app}");
            }
        }
    }
    Ok(())
}

async fn audit_verify(
    config: &ServerConfig,
    application: Option<&str>,
    seal: bool,
    json: bool,
) -> anyhow::Result<()> {
    use assent_server::service::{Finding, Services};
    let store = open_store(config).await?.store;
    let services = Services::new(
        Arc::clone(&store),
        assent_server::notify::Notifier::new(),
        Arc::new(assent_server::domain::SystemClock),
        config.limits(),
    );
    let apps = match application {
        Some(text) => vec![
            ApplicationId::parse(text)
                .context("--application takes an application id (see `app list`)")?,
        ],
        None => store
            .list_applications()
            .await?
            .into_iter()
            .map(|a| a.id)
            .collect(),
    };
    if seal {
        services.audit.seal_all().await?;
    }
    let mut failed = 0;
    for app in apps {
        let report = services.audit.verify(app).await?;
        let finding = report.finding.as_ref().map(|finding| {
            let (kind, key, value) = match finding {
                Finding::Changed { cursor } => ("changed", "cursor", *cursor),
                Finding::Removed { cursor } => ("removed", "cursor", *cursor),
                Finding::Inserted { cursor } => ("inserted", "cursor", *cursor),
                Finding::Checkpoint { seq, .. } => ("checkpoint", "seq", *seq),
            };
            serde_json::json!({"kind": kind, key: value, "message": finding.to_string()})
        });
        if report.finding.is_some() {
            failed += 1;
        }
        if json {
            let out = serde_json::json!({
                "application_id": app.to_string(),
                "ok": report.finding.is_none(),
                "checkpoints": report.checkpoints,
                "events_verified": report.events_verified,
                "events_purged": report.events_purged,
                "events_unsealed": report.events_unsealed,
                "finding": finding,
            });
            println!("{out}");
        } else {
            match &report.finding {
                None => println!(
                    "{app}: ok — {} checkpoints, {} events as sealed, {} removed by retention, \
                     {} not sealed yet",
                    report.checkpoints,
                    report.events_verified,
                    report.events_purged,
                    report.events_unsealed
                ),
                Some(finding) => println!("{app}: TAMPERED — {finding}"),
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} application(s) failed the audit");
    }
    Ok(())
}

/// `assent-server health`: one grpc.health.v1 check of the whole server.
async fn health(url: &str, timeout: std::time::Duration) -> anyhow::Result<()> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("{url} is not a server URL (e.g. http://127.0.0.1:50051)"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    let channel = endpoint.connect().await.with_context(|| {
        format!("cannot reach the server at {url}: is it running and listening there?")
    })?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .with_context(|| format!("the server at {url} did not answer the health check"))?;
    match answer.into_inner().status() {
        tonic_health::pb::health_check_response::ServingStatus::Serving => {
            println!("SERVING");
            Ok(())
        }
        other => anyhow::bail!(
            "the server at {url} is {} (draining or starting)",
            other.as_str_name()
        ),
    }
}

async fn server_keys_command(
    config: &ServerConfig,
    command: ServerKeysCommand,
) -> anyhow::Result<()> {
    let store = open_store(config).await?.store;
    let hex = |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    let time =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match command {
        ServerKeysCommand::List { json } => {
            let keys = store.server_keys().await?;
            if json {
                let out: Vec<_> = keys
                    .iter()
                    .map(|k| serde_json::json!({"key_id": k.id, "public_key": hex(&k.public_key), "created_at": time(k.created_at), "retired_at": k.retired_at.map(time)}))
                    .collect();
                println!("{}", serde_json::Value::Array(out));
            } else if keys.is_empty() {
                println!("no signing key yet (the server makes one on its first start)");
            } else {
                for key in keys {
                    let state = key
                        .retired_at
                        .map_or_else(|| "current".to_owned(), |t| format!("retired {}", time(t)));
                    println!("{}  {}  {state}", key.id, time(key.created_at));
                }
            }
        }
        ServerKeysCommand::Rotate { json } => {
            let mut rng = assent_server::secure_rng();
            let key = assent_server::service::signer::rotate(
                store.as_ref(),
                &mut rng,
                assent_server::domain::Clock::now(&assent_server::domain::SystemClock),
            )
            .await?;
            if json {
                let out = serde_json::json!({"key_id": key.id, "public_key": hex(&key.public_key)});
                println!("{out}");
            } else {
                println!("Key {} is now current; replicas switch within 30 s", key.id);
            }
        }
    }
    Ok(())
}

async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let stop = CancellationToken::new();
    let server = assent_server::run(config, listener, stop.clone());
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return Ok(result?),
        () = shutdown::signal() => stop.cancel(),
    }
    Ok(server.await?)
}
