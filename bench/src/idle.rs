//! `idle` mode: hold K authenticated agent streams, each on its own TCP
//! connection, spread over several 127.0.0.x source addresses, and report
//! the server's resident memory per connected agent.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use serde_json::{Map, Value, json};

use crate::cli::Args;
use crate::client;
use crate::cpu::{self, CpuSample};
use crate::device::{self, AgentStream, SimDevice};
use crate::report;
use crate::server::Target;

/// How long enrolling the devices and connecting every agent may take, each.
const PHASE_TIMEOUT: Duration = Duration::from_secs(900);
/// File descriptors kept free for everything but the agents.
const FD_SPARE: u64 = 4096;

/// The open-file limit in force for the run, and why it is lower than
/// wanted, if it is.
#[derive(Debug, Clone, Default)]
pub struct FdLimit {
    /// The soft limit now in force.
    pub soft: u64,
    /// Why the hard limit could not be raised far enough, if it could not.
    pub note: Option<String>,
}

/// Raises this process's open-file limit (soft, and hard when allowed) so
/// that `agents` connections fit; a server started afterwards inherits it.
pub fn raise_fd_limit(agents: usize) -> anyhow::Result<FdLimit> {
    let wanted = u64::try_from(agents)
        .unwrap_or(u64::MAX)
        .saturating_add(FD_SPARE);
    let (soft, hard) = rlimit::Resource::NOFILE
        .get()
        .context("getrlimit(NOFILE)")?;
    if soft >= wanted {
        return Ok(FdLimit { soft, note: None });
    }
    let mut note = None;
    if hard < wanted {
        match rlimit::Resource::NOFILE.set(wanted, wanted) {
            Ok(()) => {
                return Ok(FdLimit {
                    soft: wanted,
                    note: None,
                });
            }
            Err(error) => {
                note = Some(format!(
                    "cannot raise the hard open-file limit from {hard} to {wanted}: {error}"
                ));
            }
        }
    }
    let soft = wanted.min(hard);
    rlimit::Resource::NOFILE
        .set(soft, hard)
        .context("setrlimit(NOFILE)")?;
    if let Some(note) = &note {
        eprintln!("warning: {note}; at most about {soft} agents can connect");
    }
    Ok(FdLimit { soft, note })
}

/// The source address of agent `i`: 127.0.0.1 … 127.0.0.N in turn.
fn source_address(i: usize, count: u8) -> IpAddr {
    let n = u8::try_from(i % usize::from(count.max(1))).unwrap_or(0);
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + n))
}

/// Connects one agent on a connection of its own.
async fn connect_agent(
    url: &str,
    source: IpAddr,
    device: &SimDevice,
) -> anyhow::Result<(AgentStream, Duration)> {
    let started = Instant::now();
    let channel = client::endpoint(url)?
        .local_address(Some(source))
        .connect()
        .await
        .with_context(|| format!("connect from {source}"))?;
    let stream = device.connect(channel).await?;
    Ok((stream, started.elapsed()))
}

/// Runs the `idle` mode and returns the report fields.
pub async fn run(
    args: &Args,
    target: &Target,
    database_url: Option<&str>,
    fd_limit: &FdLimit,
) -> anyhow::Result<Map<String, Value>> {
    let agents = args.agents;
    let distinct = args.idle_devices.unwrap_or(agents).clamp(1, agents.max(1));
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let devices = if args.bare {
        (0..distinct).map(SimDevice::unenrolled).collect()
    } else {
        device::enroll_many(
            &target.url,
            &target.api_key,
            distinct,
            args.in_flight,
            |i| format!("idle-user-{i}"),
            deadline,
        )
        .await?
    };

    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = target.pid.and_then(cpu::rss_kb);
    let started = Instant::now();
    let deadline = started + PHASE_TIMEOUT;
    let jobs = (0..agents).map(|i| {
        let device = &devices[i % devices.len()];
        let source = source_address(i, args.source_addresses);
        let url = target.url.clone();
        async move { connect_agent(&url, source, device).await }
    });
    let mut connecting = futures::stream::iter(jobs).buffer_unordered(args.in_flight.max(1));
    let mut held = Vec::with_capacity(agents);
    let mut connect_ms = Vec::with_capacity(agents);
    let mut failures: std::collections::BTreeMap<String, u64> = Default::default();
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, connecting.next()).await {
            Ok(Some(Ok((stream, took)))) => {
                held.push(stream);
                connect_ms.push(took.as_secs_f64() * 1000.0);
            }
            Ok(Some(Err(error))) => {
                let mut kind = format!("{error:#}");
                kind.truncate(160);
                *failures.entry(kind).or_default() += 1;
            }
            Ok(None) => break,
            Err(_) => bail!("connecting {agents} agents did not finish within {PHASE_TIMEOUT:?}"),
        }
    }
    drop(connecting);
    let connect_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(args.settle.max(0.0))).await;
    let rss_settled = target.pid.and_then(cpu::rss_kb);
    let database = database_url.and_then(cpu::database_name);
    let hold_started = CpuSample::take(target.pid, database.as_deref());
    tokio::time::sleep(Duration::from_secs_f64(args.duration.max(0.0))).await;
    let hold_ended = CpuSample::take(target.pid, database.as_deref());
    let rss_after = target.pid.and_then(cpu::rss_kb);
    let still_open = held
        .iter_mut()
        .map(AgentStream::is_quiet)
        .filter(|quiet| *quiet)
        .count();

    connect_ms.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        let last = connect_ms.len().checked_sub(1)?;
        let index = ((last as f64) * q).round() as usize;
        connect_ms.get(index).map(|v| (v * 100.0).round() / 100.0)
    };
    let connected = held.len();
    let per_agent = match (rss_before, rss_after) {
        (Some(before), Some(after)) if connected > 0 => {
            Some(((after as f64 - before as f64) / connected as f64 * 100.0).round() / 100.0)
        }
        _ => None,
    };
    let mut report = Map::new();
    report.insert("agents".into(), json!(agents));
    report.insert(
        "server".into(),
        json!(if args.bare {
            "bare tonic baseline"
        } else {
            "assent-server"
        }),
    );
    report.insert("distinct_devices".into(), json!(distinct));
    report.insert("connected".into(), json!(connected));
    report.insert("still_open".into(), json!(still_open));
    if still_open < connected {
        failures.insert(
            "hold: not open at the end (ended, or an unexpected message)".to_owned(),
            u64::try_from(connected - still_open).unwrap_or(u64::MAX),
        );
    }
    report.extend(report::error_fields(&failures));
    report.insert("server_rss_kb_before".into(), json!(rss_before));
    report.insert("server_rss_kb_settled".into(), json!(rss_settled));
    report.insert("server_rss_kb_after".into(), json!(rss_after));
    report.insert("server_rss_kb_per_agent".into(), json!(per_agent));
    report.insert(
        "connect_s".into(),
        json!((connect_s * 100.0).round() / 100.0),
    );
    report.insert("connect_p50_ms".into(), json!(pick(0.50)));
    report.insert("connect_p99_ms".into(), json!(pick(0.99)));
    report.insert("hold_s".into(), json!(args.duration));
    report.insert("source_addresses".into(), json!(args.source_addresses));
    report.insert("fd_limit".into(), json!(fd_limit.soft));
    report.insert("fd_limit_note".into(), json!(fd_limit.note));
    report.insert(
        "bench_rss_kb".into(),
        json!(cpu::rss_kb(std::process::id())),
    );
    report.insert(
        "other_cpu_ms_per_s".into(),
        json!(hold_started.other_ms_per_s(&hold_ended)),
    );
    report.insert("loadavg_1m".into(), json!(cpu::loadavg_1m()));
    drop(held);
    Ok(report)
}
