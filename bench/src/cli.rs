//! Command-line arguments of `assent-bench`: the mode, where the server is
//! (started here against a database, or already running), and the load shape.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Full OTP flows: create → device submits the OTP → confirmation →
    /// signed accept → the relying party sees `transaction.accepted`.
    Flows,
    /// Push logins to connected devices: create → confirmation on the device
    /// → signed accept → event.
    Push,
    /// Hold many authenticated agent streams and report the server's RSS per agent.
    Idle,
    /// Hold `--agents` idle `Subscribe` streams of one key and report the
    /// database commits per second they add.
    Subscribers,
    /// Internal: the bare transport baseline server that `idle --bare` starts.
    #[value(hide = true)]
    BareServer,
}

impl Mode {
    /// The mode's name as it appears in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Flows => "flows",
            Self::Push => "push",
            Self::Idle => "idle",
            Self::Subscribers => "subscribers",
            Self::BareServer => "bare-server",
        }
    }
}

/// Devices of `flows` and `push` at least, by default: each worker cycles
/// through its share, and one device stream may send at most 20 messages a
/// second on average (the server's `MESSAGES_PER_SECOND`; a flow sends two),
/// so 256 devices keep each under it up to about 2 500 flows/s.
pub const DEFAULT_DEVICES: usize = 256;
/// Devices per worker at least, by default (see [`DEFAULT_DEVICES`]).
pub const DEFAULT_DEVICES_PER_WORKER: usize = 4;

/// Load generator for Assent, over the public gRPC API only.
#[derive(Debug, Clone, Parser)]
#[command(name = "assent-bench", version, about)]
pub struct Args {
    /// flows, push, idle or subscribers.
    #[arg(value_enum)]
    pub mode: Mode,
    /// PostgreSQL URL: start an `assent-server` on it (and run the pgbench
    /// floor against it).
    #[arg(long, conflicts_with = "server")]
    pub database_url: Option<String>,
    /// Target an already running server, e.g. http://127.0.0.1:50051, or
    /// several replicas separated by commas (the relying-party channels and
    /// the device streams are spread round-robin over them).
    #[arg(long, requires = "api_key")]
    pub server: Option<String>,
    /// API key of the application to use on `--server`.
    #[arg(long, requires = "server")]
    pub api_key: Option<String>,
    /// PID of the `--server` process, for RSS and CPU figures.
    #[arg(long, requires = "server")]
    pub server_pid: Option<u32>,
    /// Database of the `--server` process, for the pgbench floor.
    #[arg(long, requires = "server")]
    pub ceiling_database_url: Option<String>,
    /// The `assent-server` binary [default: the one next to this executable].
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Extra `KEY=VALUE` environment for the started server (repeatable),
    /// e.g. `ASSENT_MAX_DB_CONNECTIONS=32`.
    #[arg(long = "server-env", value_name = "KEY=VALUE")]
    pub server_env: Vec<String>,
    /// Concurrent relying-party workers.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Measured seconds (flows, push), or how long idle agents are held.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds of load before measuring (not counted).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Devices, used in turn by the workers (push: each of its own user)
    /// [default: max(256, 4 × concurrency)].
    #[arg(long)]
    pub devices: Option<usize>,
    /// Agent streams to hold in `idle` mode.
    #[arg(long, default_value_t = 1000)]
    pub agents: usize,
    /// Distinct enrolled devices behind the idle agents [default: --agents].
    #[arg(long)]
    pub idle_devices: Option<usize>,
    /// Loopback source addresses 127.0.0.1… to spread idle connections over.
    #[arg(long, default_value_t = 4)]
    pub source_addresses: u8,
    /// Connections (and enrollments) in flight at once.
    #[arg(long, default_value_t = 256)]
    pub in_flight: usize,
    /// Seconds to wait after the last idle agent connected before measuring.
    #[arg(long, default_value_t = 3.0)]
    pub settle: f64,
    /// idle: measure the bare transport baseline (a tonic server with the
    /// same HTTP/2 settings that only holds streams) instead of assent-server.
    #[arg(long)]
    pub bare: bool,
    /// bare-server: where to listen.
    #[arg(long, hide = true, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// Skip the floor (the floor fields are null); the same as
    /// `--ceiling none`.
    #[arg(long)]
    pub no_ceiling: bool,
    /// What the load is compared with [default: `floor` for `flows`, `none`
    /// otherwise]: `floor` (flows only) runs the least durable work of a
    /// flow (`bench/sql/floor.sql`) with pgbench right before the load, at
    /// 16 and 64 clients, and takes the best (`floor_flows_per_s`,
    /// `floor_ratio`); `none` skips it.
    #[arg(long, value_enum)]
    pub ceiling: Option<CeilingMode>,
    /// pgbench clients for the floor [default: the best of 16 and 64].
    #[arg(long)]
    pub ceiling_clients: Option<usize>,
    /// Seconds the floor runs (per client count).
    #[arg(long, default_value_t = 5)]
    pub ceiling_seconds: u32,
    /// Print one JSON object on stdout instead of a text report.
    #[arg(long)]
    pub json: bool,
}

/// What `--ceiling` compares the load with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CeilingMode {
    /// The physical floor: three committed state changes with their events.
    Floor,
    /// Nothing.
    None,
}

impl Args {
    /// The comparison to make: `--no-ceiling` and `--ceiling` if given,
    /// else the floor for `flows` and nothing for the other modes; an error
    /// for a floor the mode does not have.
    pub fn ceiling_mode(&self) -> anyhow::Result<CeilingMode> {
        let mode = match (self.no_ceiling, self.ceiling) {
            (true, _) => CeilingMode::None,
            (false, Some(mode)) => mode,
            (false, None) if self.mode == Mode::Flows => CeilingMode::Floor,
            (false, None) => CeilingMode::None,
        };
        if mode == CeilingMode::Floor && self.mode != Mode::Flows {
            anyhow::bail!(
                "--ceiling floor is defined for `flows` only; `{}` has no floor",
                self.mode.as_str()
            );
        }
        Ok(mode)
    }

    /// Devices to enroll and connect for `flows` and `push`: `--devices`,
    /// else enough that no device stream nears the server's per-stream
    /// message rate (20 a second) at the rates this machine reaches; never
    /// fewer than the workers.
    pub fn device_count(&self) -> usize {
        self.devices
            .unwrap_or(
                self.concurrency
                    .saturating_mul(DEFAULT_DEVICES_PER_WORKER)
                    .max(DEFAULT_DEVICES),
            )
            .max(self.concurrency)
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &[&str]) -> Args {
        match Args::try_parse_from(std::iter::once("assent-bench").chain(line.iter().copied())) {
            Ok(args) => args,
            Err(error) => panic!("{line:?}: {error}"),
        }
    }

    #[test]
    fn flows_are_compared_with_the_floor_by_default() {
        let args = parse(&["flows", "--database-url", "postgres://x/y"]);
        assert_eq!(args.ceiling_mode().ok(), Some(CeilingMode::Floor));
    }

    #[test]
    fn other_modes_have_no_comparison_by_default() {
        for mode in ["push", "idle", "subscribers"] {
            let args = parse(&[mode, "--database-url", "postgres://x/y"]);
            assert_eq!(args.ceiling_mode().ok(), Some(CeilingMode::None), "{mode}");
        }
    }

    #[test]
    fn no_ceiling_wins_over_the_default() {
        let args = parse(&["flows", "--database-url", "postgres://x/y", "--no-ceiling"]);
        assert_eq!(args.ceiling_mode().ok(), Some(CeilingMode::None));
    }

    #[test]
    fn a_floor_for_push_is_refused() {
        let args = parse(&[
            "push",
            "--database-url",
            "postgres://x/y",
            "--ceiling",
            "floor",
        ]);
        assert!(args.ceiling_mode().is_err());
    }

    #[test]
    fn enough_devices_by_default_for_the_per_stream_message_rate() {
        let one = parse(&["flows", "--database-url", "postgres://x/y"]);
        assert_eq!(one.device_count(), DEFAULT_DEVICES);
        let many = parse(&["flows", "--database-url", "u", "--concurrency", "100"]);
        assert_eq!(many.device_count(), 400);
        let asked = parse(&[
            "flows",
            "--database-url",
            "u",
            "--concurrency",
            "8",
            "--devices",
            "2",
        ]);
        assert_eq!(asked.device_count(), 8);
    }

    #[test]
    fn the_server_replay_is_gone() {
        let line = ["assent-bench", "flows", "--ceiling", "server"];
        assert!(Args::try_parse_from(line).is_err());
    }
}
