//! `assent`: the relying-party command line for Assent. This file holds the
//! global arguments and the dispatch to [`commands`]; the connection lives in
//! [`client`], the wording of server errors in [`status`], and everything
//! printed on stdout in [`output`].

mod client;
mod commands;
mod output;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, error::ErrorKind};

use crate::client::{AssentClient, ClientConfig};
use crate::commands::{devices, enrollment, events, login, tx};
use crate::output::Format;

/// Exit code used when stdout was closed under us (128 + SIGPIPE), as a shell would report it.
const EXIT_BROKEN_PIPE: u8 = 141;

/// The relying-party command line for Assent: create enrollment codes and
/// logins, follow their outcome, read the event log and manage devices.
#[derive(Debug, Parser)]
#[command(name = "assent", version, propagate_version = true)]
#[command(
    after_help = "Every command needs an API key (--api-key or ASSENT_API_KEY).\n\
    With --json, stdout carries exactly one JSON document (one per line for `events`);\n\
    empty server fields are printed as null and timestamps as RFC 3339 UTC strings.\n\
    Exit codes: 0 success, 1 operational failure (or a login that was not accepted), 2 usage error."
)]
struct Cli {
    /// URL of the Assent server (http:// or https://).
    #[arg(
        long,
        global = true,
        env = "ASSENT_SERVER",
        value_name = "URL",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,

    /// The application's API key, sent as `authorization: Bearer <key>`.
    #[arg(
        long,
        global = true,
        env = "ASSENT_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,

    /// PEM file of the CA that signed the server's certificate (https:// only;
    /// without it the system bundle is tried).
    #[arg(long, global = true, env = "ASSENT_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,

    /// PEM file of the client certificate presented when the server asks for
    /// one (mutual TLS; with --client-key).
    #[arg(
        long,
        global = true,
        env = "ASSENT_CLIENT_CERT",
        value_name = "FILE",
        requires = "client_key"
    )]
    client_cert: Option<PathBuf>,

    /// PEM file of the client certificate's private key.
    #[arg(
        long,
        global = true,
        env = "ASSENT_CLIENT_KEY",
        value_name = "FILE",
        requires = "client_cert"
    )]
    client_key: Option<PathBuf>,

    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

/// The top-level subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Enrollment codes that turn a device agent into a device of one user.
    #[command(subcommand)]
    Enrollment(enrollment::EnrollmentCommand),
    /// Start logins: an OTP shown as a QR code, or a push to the user's devices.
    #[command(subcommand)]
    Login(login::LoginCommand),
    /// Inspect, wait for or cancel one transaction.
    #[command(subcommand)]
    Tx(tx::TxCommand),
    /// Print the application's event log.
    Events(events::EventsArgs),
    /// List, inspect or revoke enrolled devices.
    #[command(subcommand)]
    Devices(devices::DevicesCommand),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let api_key = match cli.api_key.as_deref().map(str::trim) {
        Some(key) if !key.is_empty() => key.to_owned(),
        _ => usage_error(
            ErrorKind::MissingRequiredArgument,
            "no API key: pass --api-key KEY or set ASSENT_API_KEY",
        ),
    };
    if let Command::Login(login) = &cli.command
        && let Err(problem) = login.check()
    {
        usage_error(ErrorKind::ValueValidation, &problem);
    }
    let format = if cli.json {
        Format::Json
    } else {
        Format::Human
    };
    let config = ClientConfig {
        server: cli.server,
        api_key,
        ca_cert: cli.ca_cert,
        client_identity: cli.client_cert.zip(cli.client_key),
    };
    match run(cli.command, &config, format).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if is_broken_pipe(&error) => ExitCode::from(EXIT_BROKEN_PIPE),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Connects, then runs one subcommand.
async fn run(command: Command, config: &ClientConfig, format: Format) -> anyhow::Result<()> {
    let mut client = AssentClient::connect(config).await?;
    match command {
        Command::Enrollment(cmd) => enrollment::run(cmd, &mut client, &config.server, format).await,
        Command::Login(cmd) => login::run(cmd, &mut client, format).await,
        Command::Tx(cmd) => tx::run(cmd, &mut client, format).await,
        Command::Events(args) => events::run(args, &mut client, format).await,
        Command::Devices(cmd) => devices::run(cmd, &mut client, format).await,
    }
}

/// Reports a usage problem the way clap does (exit code 2) and exits.
fn usage_error(kind: ErrorKind, message: &str) -> ! {
    Cli::command().error(kind, message).exit()
}

/// Whether the failure is stdout having been closed (`assent events --follow | head`).
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_flag_is_accepted_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "assent",
            "tx",
            "get",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            "--json",
        ])
        .unwrap();
        assert!(cli.json);
    }

    #[test]
    fn login_push_takes_its_flags() {
        let cli = Cli::try_parse_from([
            "assent",
            "login",
            "push",
            "--user",
            "alice",
            "--number-matching",
            "--ttl",
            "30",
            "--context",
            "ip=10.0.0.1",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Login(_)));
        let missing_user = Cli::try_parse_from(["assent", "login", "push"]).unwrap_err();
        assert_eq!(missing_user.kind(), ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
