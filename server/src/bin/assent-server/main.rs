//! `assent-server`: parse arguments, load configuration, start telemetry,
//! run a subcommand (serving by default).

mod apps;
mod args;
mod audit;
mod ciba;
mod health;
mod keys;
mod webhooks;

use std::process::ExitCode;

use anyhow::Context as _;
use assent_server::{ServerConfig, open_store, shutdown, telemetry};
use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::args::{AppCommand, AuditCommand, Cli, Command, ServeArgs};

/// How every command prints a time: RFC 3339 in UTC, whole seconds, `Z`.
fn time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// jemalloc rather than the system allocator: at 19 500 idle agents it
/// keeps ~3 KB less per connection resident than glibc's malloc (whose
/// per-thread arenas hold freed memory) — BENCHMARKS.md, idle agents.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
        Command::App(AppCommand::Create { name, json }) => apps::create(&config, &name, json).await,
        Command::App(AppCommand::Key(command)) => apps::key_command(&config, command).await,
        Command::App(AppCommand::Webhook(command)) => webhooks::command(&config, command).await,
        Command::App(AppCommand::Ciba {
            app,
            mode,
            notification_endpoint,
            alg,
            json,
        }) => {
            ciba::set(
                &config,
                &app,
                &mode,
                notification_endpoint.as_deref(),
                &alg,
                json,
            )
            .await
        }
        Command::Keys(command) => keys::server_keys_command(&config, command).await,
        Command::Health { url, timeout } => {
            let url = url.unwrap_or_else(|| format!("http://127.0.0.1:{}", config.listen.port()));
            health::check(&url, std::time::Duration::from_secs(timeout)).await
        }
        Command::Audit(AuditCommand::Verify {
            application,
            seal,
            json,
        }) => audit::verify(&config, application.as_deref(), seal, json).await,
        Command::App(AppCommand::List { json }) => apps::list(&config, json).await,
    }
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
