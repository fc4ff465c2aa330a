//! `assent-bench`: a load generator for Assent over its public gRPC API.
//!
//! It starts an `assent-server` against a PostgreSQL database (or targets a
//! running one), creates its application, enrolls simulated devices with
//! real Ed25519 keys, and measures one of four modes: full OTP `flows`,
//! `push` logins, `idle` agent streams (server memory per agent) or idle
//! `subscribers` (database commits they add). `flows` is compared with the
//! floor of the same run (pgbench over `sql/floor.sql`, the least durable
//! work of a login). Every report carries the machine's other load, and any
//! error makes the run exit non-zero after the report, with the error kinds
//! and their counts. `bench/README.md` and BENCHMARKS.md at the repository
//! root have the commands and results.
//!
//! Modules: [`cli`] arguments, [`server`] the server process, [`client`]
//! channels, [`device`] simulated devices, [`events`] the Subscribe router,
//! [`load`] the shared load loop, [`flows`], [`push`], [`idle`],
//! [`subscribers`] the modes, [`floor`] pgbench, [`bare`] the transport
//! baseline (with [`small_codec`]), [`cpu`] `/proc` figures, [`report`]
//! histograms and output.

mod bare;
mod cli;
mod client;
mod cpu;
mod device;
mod events;
mod floor;
mod flows;
mod idle;
mod load;
mod push;
mod report;
mod server;
mod small_codec;
mod subscribers;

use std::process::ExitCode;

use anyhow::bail;
use clap::Parser as _;
use serde_json::json;

use cli::{Args, Mode};
use server::{ServerProcess, Target};

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(error) = args.ceiling_mode() {
        eprintln!("error: {error:#}");
        return ExitCode::from(2);
    }
    // Before any thread or child exists, so the server inherits the limit.
    let fd_limit = if args.mode == Mode::Idle {
        match idle::raise_fd_limit(args.agents) {
            Ok(limit) => limit,
            Err(error) => {
                eprintln!("error: {error:#}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        idle::FdLimit::default()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, fd_limit)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, fd_limit: idle::FdLimit) -> anyhow::Result<()> {
    if args.mode == Mode::BareServer {
        return bare::serve(args.listen).await;
    }
    let (process, target, database_url) = match (&args.database_url, &args.server, &args.api_key) {
        _ if args.bare && args.mode == Mode::Idle => {
            let process = ServerProcess::start_bare(&args.server_env).await?;
            let target = process.target.clone();
            (Some(process), target, None)
        }
        (Some(url), None, _) => {
            let bin = match &args.server_bin {
                Some(bin) => bin.clone(),
                None => server::default_server_bin()?,
            };
            let process = ServerProcess::start(bin, url, &args.server_env).await?;
            let target = process.target.clone();
            (Some(process), target, Some(url.clone()))
        }
        (None, Some(url), Some(key)) => {
            let target = Target {
                url: url.clone(),
                api_key: key.clone(),
                pid: args.server_pid,
            };
            (None, target, args.ceiling_database_url.clone())
        }
        _ => bail!("pass --database-url URL, or --server URL --api-key KEY"),
    };
    let measured = match args.mode {
        Mode::Flows => flows::run(&args, &target, database_url.as_deref()).await,
        Mode::Push => push::run(&args, &target, database_url.as_deref()).await,
        Mode::Idle => idle::run(&args, &target, database_url.as_deref(), &fd_limit).await,
        Mode::Subscribers => subscribers::run(&args, &target, database_url.as_deref()).await,
        Mode::BareServer => bail!("bare-server is handled above"),
    };
    let stopped = match process {
        Some(process) => process.stop().await,
        None => Ok(()),
    };
    let mut report = measured?;
    report.insert("mode".into(), json!(args.mode.as_str()));
    report.insert("server_pid_known".into(), json!(target.pid.is_some()));
    report::print(&report, args.json);
    stopped?;
    // A run with errors measured something else than the flows it claims:
    // the report above shows what happened, the exit status says it failed.
    let kinds = report::error_kinds(&report);
    if !kinds.is_empty() {
        bail!("the run had errors: {}", kinds.join("; "));
    }
    Ok(())
}
