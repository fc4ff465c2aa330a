//! `assent-agent`: parses the command line, builds the configuration, sets
//! up logging and calls the library; nothing else.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use assent_agent::config::{DEFAULT_SERVER, default_device_name, default_state_dir};
use assent_agent::credentials::load_profile;
use assent_agent::{AgentConfig, AgentError, OtpOutcome, Policy, SocketGroup};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The Assent device agent: enroll this device, then answer login confirmations.
#[derive(Debug, Parser)]
#[command(name = "assent-agent", version)]
struct Cli {
    /// Directory holding the enrollment and the control socket [default:
    /// $XDG_STATE_HOME/assent-agent, else ~/.local/state/assent-agent].
    #[arg(long, global = true, env = "ASSENT_AGENT_DIR")]
    state_dir: Option<PathBuf>,
    /// Assent server URL, or several separated by commas (replicas): the
    /// agent starts at a random one and moves to the next on failure or
    /// when a server drains [default: the enrolled server(s), else
    /// http://127.0.0.1:50051].
    #[arg(long, global = true, env = "ASSENT_SERVER")]
    server: Option<String>,
    /// PEM file of the CA that signed the server's certificate (https:// only).
    #[arg(long, global = true, env = "ASSENT_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// PEM file of the client certificate to present when the server asks
    /// for one (mutual TLS; with --client-key).
    #[arg(
        long,
        global = true,
        env = "ASSENT_CLIENT_CERT",
        requires = "client_key"
    )]
    client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(
        long,
        global = true,
        env = "ASSENT_CLIENT_KEY",
        requires = "client_cert"
    )]
    client_key: Option<PathBuf>,
    /// The daemon's control socket, used by `run` and by `otp`, `scan` and
    /// `status` [default: STATE_DIR/agent.sock].
    #[arg(long, global = true, env = "ASSENT_AGENT_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Log format on stderr (level from RUST_LOG, default: info for `run`,
    /// warn for the other commands; `run --policy prompt` on a terminal logs
    /// warnings only, so the question is not interleaved with log lines).
    #[arg(
        long,
        global = true,
        env = "ASSENT_LOG_FORMAT",
        default_value = "human"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// The client certificate and key, when both are given.
    fn client_identity(&self) -> Option<assent_device::ClientIdentity> {
        Some(assent_device::ClientIdentity {
            cert: self.client_cert.clone()?,
            key: self.client_key.clone()?,
        })
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Enroll this device with a code from the application, typed or read
    /// from a picture of the enrollment QR code.
    Enroll {
        /// The enrollment code (base64url: it may start with `-`).
        #[arg(
            long,
            allow_hyphen_values = true,
            required_unless_present = "scan",
            conflicts_with = "scan"
        )]
        code: Option<String>,
        /// Read the code, and the server unless --server is given, from a
        /// picture of the enrollment QR code (PNG or JPEG; `-` reads stdin).
        #[arg(long, allow_hyphen_values = true, value_name = "IMAGE")]
        scan: Option<PathBuf>,
        /// Device name shown to the application [default: the host name].
        #[arg(long)]
        name: Option<String>,
        /// Replace an existing enrollment.
        #[arg(long)]
        force: bool,
    },
    /// Run the daemon: stay connected and answer confirmation requests.
    Run {
        /// accept | deny | prompt | desktop | exec:COMMAND
        #[arg(long, env = "ASSENT_AGENT_POLICY", default_value = "prompt")]
        policy: Policy,
        /// Seconds an exec: policy command may run before the login is denied.
        #[arg(long, default_value_t = 30)]
        exec_timeout: u64,
        /// Group (name or GID) whose members may use the control socket:
        /// the socket becomes mode 0660 with that group, and its directory
        /// must let the group through [default: the daemon's user only, 0600].
        #[arg(long, env = "ASSENT_AGENT_SOCKET_GROUP", value_name = "GROUP")]
        socket_group: Option<String>,
    },
    /// Hand an OTP to the running daemon and wait for the outcome.
    Otp {
        /// The OTP shown by the login page (base64 or base64url).
        // base64url text may start with `-`: it is still the OTP, not a flag.
        #[arg(allow_hyphen_values = true)]
        otp: String,
        /// Seconds to wait for the outcome.
        #[arg(long, default_value_t = 150)]
        timeout: u64,
    },
    /// Read the OTP from a picture of the login page's QR code (PNG or
    /// JPEG; `-` reads the image from stdin), hand it to the running daemon
    /// and wait for the outcome, exactly like `otp`.
    Scan {
        /// The image file, or `-` for stdin.
        #[arg(allow_hyphen_values = true, value_name = "IMAGE")]
        image: PathBuf,
        /// Seconds to wait for the outcome.
        #[arg(long, default_value_t = 150)]
        timeout: u64,
    },
    /// Show the enrollment and whether the daemon runs and is connected.
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon logs its progress, except while it asks a person on this
    // terminal; one-shot commands only warn, their output is the answer.
    let quiet = match &cli.command {
        Command::Run { policy, .. } => {
            matches!(policy, Policy::Prompt) && std::io::stdout().is_terminal()
        }
        _ => true,
    };
    init_tracing(cli.log_format, if quiet { "warn" } else { "info" });
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let state_dir = match &cli.state_dir {
        Some(dir) => dir.clone(),
        None => default_state_dir().context(
            "cannot find a state directory: set --state-dir, ASSENT_AGENT_DIR, XDG_STATE_HOME or HOME",
        )?,
    };
    let client_identity = cli.client_identity();
    match cli.command {
        Command::Enroll {
            ref code,
            ref scan,
            ref name,
            force,
        } => {
            let (code, scanned_server) = match (code, scan) {
                (Some(code), _) => (code.clone(), None),
                (None, Some(image)) => {
                    let bytes = read_image(image)?;
                    let qr = assent_agent::qr::enrollment_from_image(&bytes)?;
                    (qr.code, qr.server)
                }
                (None, None) => anyhow::bail!("give --code CODE or --scan IMAGE"),
            };
            // --server / ASSENT_SERVER wins over the server in the QR code.
            let server = cli
                .server
                .clone()
                .or(scanned_server)
                .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
            let mut config = AgentConfig::new(state_dir, server, Policy::default());
            config.ca_cert = cli.ca_cert.clone();
            config.client_identity = client_identity.clone();
            let name = name.clone().unwrap_or_else(default_device_name);
            let enrollment = assent_agent::enroll(&config, &code, &name, force).await?;
            if cli.json {
                println!("{}", serde_json::to_string(&enrollment)?);
            } else {
                println!(
                    "Enrolled as device {} of user {} for {}.",
                    enrollment.device_id, enrollment.user_id, enrollment.application_name
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            policy,
            exec_timeout,
            ref socket_group,
        } => {
            let server = resolve_server(cli.server.clone(), &state_dir);
            let mut config = AgentConfig::new(state_dir, server, policy);
            config.exec_timeout = Duration::from_secs(exec_timeout);
            config.ca_cert = cli.ca_cert.clone();
            config.client_identity = client_identity.clone();
            config.socket = cli.socket.clone();
            config.socket_group = socket_group
                .as_deref()
                .filter(|group| !group.trim().is_empty())
                .map(SocketGroup::resolve)
                .transpose()
                .context("invalid --socket-group / ASSENT_AGENT_SOCKET_GROUP")?;
            run_until_signalled(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Otp { ref otp, timeout } => {
            let socket = control_socket(&cli, &state_dir);
            Ok(hand_in(
                &state_dir,
                &socket,
                otp,
                Duration::from_secs(timeout),
                cli.json,
            )
            .await)
        }
        Command::Scan { ref image, timeout } => {
            let otp = match read_qr(image) {
                Ok(otp) => otp,
                Err(error) => {
                    let failed = OtpOutcome {
                        ok: false,
                        state: None,
                        transaction_id: None,
                        reason: None,
                        error: Some(error.to_string()),
                    };
                    if cli.json {
                        println!("{}", serde_json::to_string(&failed).unwrap_or_default());
                    }
                    eprintln!("error: {error:#}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let socket = control_socket(&cli, &state_dir);
            Ok(hand_in(
                &state_dir,
                &socket,
                &otp,
                Duration::from_secs(timeout),
                cli.json,
            )
            .await)
        }
        Command::Status => {
            let socket = control_socket(&cli, &state_dir);
            status(&state_dir, &socket, cli.server.clone(), cli.json).await
        }
    }
}

/// `--socket`/`ASSENT_AGENT_SOCKET`, else `STATE_DIR/agent.sock`.
fn control_socket(cli: &Cli, state_dir: &Path) -> PathBuf {
    cli.socket
        .clone()
        .unwrap_or_else(|| assent_agent::control::socket_path(state_dir))
}

/// `--server`/`ASSENT_SERVER`, else the server the device enrolled with.
fn resolve_server(explicit: Option<String>, state_dir: &Path) -> String {
    explicit
        .or_else(|| {
            load_profile(state_dir)
                .ok()
                .flatten()
                .map(|profile| profile.server)
        })
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned())
}

/// Runs the daemon until SIGTERM or SIGINT, then lets it stop cleanly.
async fn run_until_signalled(config: AgentConfig) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let shutdown = CancellationToken::new();
    let daemon = assent_agent::run(config, shutdown.clone());
    tokio::pin!(daemon);
    tokio::select! {
        result = &mut daemon => return Ok(result?),
        _ = terminate.recv() => tracing::info!("SIGTERM received; stopping"),
        _ = interrupt.recv() => tracing::info!("SIGINT received; stopping"),
    }
    shutdown.cancel();
    Ok(daemon.await?)
}

/// The OTP in the QR code of the image at `path` (`-`: stdin).
fn read_qr(path: &Path) -> anyhow::Result<String> {
    Ok(assent_agent::qr::otp_from_image(&read_image(path)?)?)
}

/// The bytes of the image at `path` (`-`: stdin), at most [`MAX_IMAGE_BYTES`].
fn read_image(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .take(MAX_IMAGE_BYTES)
            .read_to_end(&mut bytes)
            .context("cannot read the image from stdin")?;
    } else {
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_IMAGE_BYTES).read_to_end(&mut bytes))
            .with_context(|| format!("cannot read the image {}", path.display()))?;
    }
    if bytes.len() as u64 >= MAX_IMAGE_BYTES {
        anyhow::bail!("the image is larger than {} MB", MAX_IMAGE_BYTES >> 20);
    }
    Ok(bytes)
}

/// Largest image `scan` reads.
const MAX_IMAGE_BYTES: u64 = 32 << 20;

/// `assent-agent otp`: exit 0 only when the login was accepted.
async fn hand_in(
    state_dir: &Path,
    socket: &Path,
    otp: &str,
    timeout: Duration,
    as_json: bool,
) -> ExitCode {
    let outcome = assent_agent::submit_otp_at(socket, otp, timeout)
        .await
        .unwrap_or_else(|error: AgentError| OtpOutcome {
            ok: false,
            state: None,
            transaction_id: None,
            reason: None,
            error: Some(error.to_string()),
        });
    let application = load_profile(state_dir)
        .ok()
        .flatten()
        .map(|p| p.application_name);
    let summary = outcome.summary(application.as_deref());
    if as_json {
        println!("{}", serde_json::to_string(&outcome).unwrap_or_default());
    } else if outcome.ok {
        println!("{summary}");
    }
    if outcome.ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("{summary}");
        ExitCode::FAILURE
    }
}

/// `assent-agent status`: asks the daemon, else reads the enrollment file.
async fn status(
    state_dir: &Path,
    socket: &Path,
    server: Option<String>,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let (report, running) =
        match assent_agent::daemon_status_at(socket, Duration::from_secs(5)).await {
            Ok(daemon) => (
                json!({
                    "enrolled": true,
                    "running": true,
                    "connected": daemon.connected,
                    "device_id": daemon.device_id,
                    "user_id": daemon.user_id,
                    "application_name": daemon.application_name,
                    "server": daemon.server,
                }),
                true,
            ),
            Err(error) => {
                if !matches!(error, AgentError::DaemonNotRunning { .. }) {
                    tracing::warn!(%error, "the daemon did not answer");
                }
                let profile = load_profile(state_dir)?;
                let server = server.or_else(|| profile.as_ref().map(|p| p.server.clone()));
                (
                    json!({
                        "enrolled": profile.is_some(),
                        "running": false,
                        "connected": false,
                        "device_id": profile.as_ref().map(|p| &p.device_id),
                        "user_id": profile.as_ref().map(|p| &p.user_id),
                        "application_name": profile.as_ref().map(|p| &p.application_name),
                        "server": server,
                    }),
                    false,
                )
            }
        };
    let revoked = assent_agent::credentials::revoked(state_dir);
    let mut report = report;
    report["revoked"] = json!(revoked.is_some());
    // A revoked enrollment is a failure to report, not a state to wait out.
    let code = if revoked.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    };
    if as_json {
        println!("{report}");
        return Ok(code);
    }
    if let Some(message) = &revoked {
        println!(
            "REVOKED: {}\nTo enroll again: assent-agent enroll --force --code CODE",
            message.trim()
        );
        return Ok(code);
    }
    if report["enrolled"] != true {
        println!("not enrolled (state directory {})", state_dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let text = |field: &str| report[field].as_str().unwrap_or("?").to_owned();
    println!(
        "enrolled: device {} of user {} for {}",
        text("device_id"),
        text("user_id"),
        text("application_name")
    );
    let daemon = match (running, report["connected"] == true) {
        (false, _) => "not running".to_owned(),
        (true, true) => format!("running, connected to {}", text("server")),
        (true, false) => format!("running, not connected to {}", text("server")),
    };
    println!("daemon: {daemon}");
    Ok(ExitCode::SUCCESS)
}

/// Logs to stderr, level from `RUST_LOG`, else `default_level` (`info` for
/// the daemon, `warn` for one-shot commands, whose output is for a person).
fn init_tracing(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
