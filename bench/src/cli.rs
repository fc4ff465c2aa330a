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

/// Load generator for Assent, over the public gRPC API only.
#[derive(Debug, Clone, Parser)]
#[command(name = "assent-bench", version, about)]
pub struct Args {
    /// flows, push or idle.
    #[arg(value_enum)]
    pub mode: Mode,
    /// PostgreSQL URL: start an `assent-server` on it (and run the pgbench
    /// ceiling against it).
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
    /// Database of the `--server` process, for the pgbench ceiling.
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
    /// Devices (push: each of its own user) [default: max(concurrency, 1)].
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
    /// Skip the pgbench ceiling (ceiling and ratio are null); the same as
    /// `--ceiling none`.
    #[arg(long)]
    pub no_ceiling: bool,
    /// What the load is compared with: `server` replays the server's own
    /// statements at the load's concurrency (`ceiling_flows_per_s`,
    /// `ratio`); `floor` (flows only) runs the least durable work of a flow
    /// at 16 and 64 clients and takes the best (`floor_flows_per_s`,
    /// `floor_ratio`); `none` skips it.
    #[arg(long, value_enum, default_value_t = CeilingMode::Server)]
    pub ceiling: CeilingMode,
    /// pgbench clients for the ceiling [default: --concurrency]. The server
    /// uses at most its pool size (16) of database connections, so above
    /// that the same-concurrency ceiling understates what the database does
    /// for it; `--ceiling-clients 16` measures the ceiling at the pool size.
    #[arg(long)]
    pub ceiling_clients: Option<usize>,
    /// Seconds the pgbench ceiling runs.
    #[arg(long, default_value_t = 5)]
    pub ceiling_seconds: u32,
    /// Print one JSON object on stdout instead of a text report.
    #[arg(long)]
    pub json: bool,
}

/// What `--ceiling` compares the load with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CeilingMode {
    /// The server's own statements, replayed.
    Server,
    /// The physical floor: three committed state changes with their events.
    Floor,
    /// Nothing.
    None,
}

impl Args {
    /// The ceiling to measure, `--no-ceiling` included.
    pub fn ceiling_mode(&self) -> CeilingMode {
        if self.no_ceiling {
            CeilingMode::None
        } else {
            self.ceiling
        }
    }

    /// Devices to enroll and connect for `flows` and `push`.
    pub fn device_count(&self) -> usize {
        self.devices
            .unwrap_or(self.concurrency)
            .max(self.concurrency)
            .max(1)
    }
}
