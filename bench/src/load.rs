//! What `flows` and `push` share: enrolling and connecting the devices, the
//! relying-party clients and event router, the pgbench ceiling right before
//! the load, the measured window, the workers and the common report fields.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Map, Value, json};
use tokio::task::JoinSet;

use crate::ceiling::{self, CeilingInput, Script};
use crate::cli::Args;
use crate::cli::CeilingMode;
use crate::client::{self, RpClient};
use crate::cpu::{self, CpuSample};
use crate::device::{self, AgentStream, SimDevice};
use crate::events::EventRouter;
use crate::report::Recorder;
use crate::server::Target;

/// How long enrolling and connecting the devices may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(600);
/// Relying-party calls multiplexed over one connection.
const WORKERS_PER_RP_CHANNEL: usize = 16;

/// When flows count: started at or after `measure_from`, before `end`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Start of the measured part (after the warm-up).
    pub measure_from: Instant,
    /// No flow starts after this.
    pub end: Instant,
}

/// One device with its open stream, owned by one worker.
pub struct Held {
    /// The device.
    pub device: Arc<SimDevice>,
    /// Its authenticated stream.
    pub stream: AgentStream,
}

/// What a worker gets.
pub struct WorkerKit {
    /// The worker's devices.
    pub held: Vec<Held>,
    /// Its relying-party client.
    pub rp: RpClient,
    /// Outcome events.
    pub router: EventRouter,
    /// When to count and stop.
    pub window: Window,
    /// The server, for reconnecting a broken stream.
    pub url: String,
}

/// Enrolls and connects `args.device_count()` devices (user `user(i)`),
/// runs the ceiling, subscribes, then runs `args.concurrency` workers made
/// by `worker` and returns the report fields.
pub async fn run<W, F>(
    script: Script,
    args: &Args,
    target: &Target,
    database_url: Option<&str>,
    user: impl Fn(usize) -> String,
    worker: W,
) -> anyhow::Result<Map<String, Value>>
where
    W: Fn(WorkerKit) -> F,
    F: Future<Output = anyhow::Result<Recorder>> + Send + 'static,
{
    let count = args.device_count();
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let devices = device::enroll_many(
        &target.url,
        &target.api_key,
        count,
        args.in_flight,
        user,
        deadline,
    )
    .await?;
    let streams = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        device::connect_all(&target.url, &devices, args.in_flight),
    )
    .await
    .context("connecting the devices did not finish in time")??;

    let mut report = Map::new();
    let mode = args.ceiling_mode();
    let floor_script = matches!(script, Script::Flow) && mode == CeilingMode::Floor;
    let ceiling = match (database_url, mode) {
        (Some(_), CeilingMode::None) | (None, _) => None,
        (Some(url), _) => {
            let first = devices.first().context("no device")?;
            let input = CeilingInput {
                database_url: url.to_owned(),
                application_id: first.application_id.clone(),
                api_key: target.api_key.clone(),
                device_id: first.device_id.clone(),
                user_id: first.user_id.clone(),
            };
            if floor_script {
                // The floor's best of 16 and 64 clients (or the one asked for).
                let clients = args.ceiling_clients.map_or(vec![16, 64], |c| vec![c]);
                let mut best: Option<f64> = None;
                for clients in clients {
                    let tps =
                        ceiling::measure(Script::Floor, &input, clients, args.ceiling_seconds)
                            .await?;
                    best = match (best, tps) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        (a, b) => a.or(b),
                    };
                }
                best
            } else {
                let clients = args.ceiling_clients.unwrap_or(args.concurrency);
                ceiling::measure(script, &input, clients, args.ceiling_seconds).await?
            }
        }
    };

    let rp_channels = client::channels(
        &target.url,
        args.concurrency.div_ceil(WORKERS_PER_RP_CHANNEL),
    )
    .await?;
    let router = EventRouter::default();
    let mut background = JoinSet::new();
    router
        .start(
            client::rp_client(rp_channels[0].clone(), &target.api_key)?,
            &mut background,
        )
        .await?;

    let concurrency = args.concurrency.max(1);
    let mut shares: Vec<Vec<Held>> = (0..concurrency).map(|_| Vec::new()).collect();
    for (i, (device, stream)) in devices.into_iter().zip(streams).enumerate() {
        shares[i % concurrency].push(Held {
            device: Arc::new(device),
            stream,
        });
    }
    let start = Instant::now();
    let window = Window {
        measure_from: start + Duration::from_secs_f64(args.warmup.max(0.0)),
        end: start + Duration::from_secs_f64(args.warmup.max(0.0) + args.duration.max(0.0)),
    };
    let mut workers = JoinSet::new();
    for (w, held) in shares.into_iter().enumerate() {
        let channel = rp_channels[w % rp_channels.len()].clone();
        workers.spawn(worker(WorkerKit {
            held,
            rp: client::rp_client(channel, &target.api_key)?,
            router: router.clone(),
            window,
            url: target.url.clone(),
        }));
    }
    let database = database_url.and_then(cpu::database_name);
    tokio::time::sleep_until(window.measure_from.into()).await;
    let before = CpuSample::take(target.pid, database.as_deref());
    tokio::time::sleep_until(window.end.into()).await;
    let after = CpuSample::take(target.pid, database.as_deref());
    let mut total: Option<Recorder> = None;
    while let Some(joined) = workers.join_next().await {
        let recorder = joined.context("a worker panicked")??;
        match &mut total {
            Some(total) => total.merge(&recorder),
            None => total = Some(recorder),
        }
    }
    background.abort_all();
    let total = total.context("no worker ran")?;

    report.insert("concurrency".into(), json!(args.concurrency));
    report.insert("duration_s".into(), json!(args.duration));
    report.insert("warmup_s".into(), json!(args.warmup));
    report.insert("devices".into(), json!(count));
    report.extend(total.fields(args.duration));
    let flows_per_s = report
        .get("flows_per_s")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let rounded = ceiling.map(|c| (c * 100.0).round() / 100.0);
    let ratio = ceiling
        .filter(|c| *c > 0.0)
        .map(|c| (flows_per_s / c * 1000.0).round() / 1000.0);
    let (ceiling_key, ratio_key, used) = if floor_script {
        ("floor_flows_per_s", "floor_ratio", Script::Floor)
    } else {
        ("ceiling_flows_per_s", "ratio", script)
    };
    report.insert(ceiling_key.into(), json!(rounded));
    report.insert(ratio_key.into(), json!(ratio));
    report.insert("ceiling_script".into(), json!(ceiling.map(|_| used.name())));
    report.insert(
        "ceiling_clients".into(),
        json!(ceiling.map(|_| match (floor_script, args.ceiling_clients) {
            (_, Some(clients)) => json!(clients),
            (true, None) => json!([16, 64]),
            (false, None) => json!(args.concurrency),
        })),
    );
    let cpu = before.per_flow(&after, total.completed);
    let server_and_database = ["server_ms_per_flow", "postgres_ms_per_flow"]
        .iter()
        .map(|field| cpu.get(*field).and_then(Value::as_f64))
        .sum::<Option<f64>>()
        .map(|ms| (ms * 100.0).round() / 100.0);
    report.insert("cpu_ms_per_flow".into(), json!(server_and_database));
    report.insert("cpu".into(), cpu);
    report.insert("load_average".into(), json!(load_average()));
    Ok(report)
}

/// The 1-minute load average, as context for a noisy machine.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
