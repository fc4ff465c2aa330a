//! What `flows` and `push` share: enrolling and connecting the devices, the
//! relying-party clients and event router, the pgbench floor right before
//! the load (flows), the measured window, the workers and the common report
//! fields (the floor, CPU per flow, the machine's other load).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Map, Value, json};
use tokio::task::JoinSet;

use crate::cli::{Args, CeilingMode};
use crate::client::{self, RpClient};
use crate::cpu::{self, CpuSample};
use crate::device::{self, AgentStream, SimDevice};
use crate::events::EventRouter;
use crate::floor::{self, FloorInput};
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
/// runs the floor if asked for, subscribes, then runs `args.concurrency`
/// workers made by `worker` and returns the report fields.
pub async fn run<W, F>(
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

    let floor_clients = args
        .ceiling_clients
        .map_or(floor::DEFAULT_CLIENTS.to_vec(), |c| vec![c]);
    let is_floor = args.ceiling_mode()? == CeilingMode::Floor;
    let floor = match database_url {
        Some(url) if is_floor => {
            let first = devices.first().context("no device")?;
            let input = FloorInput {
                database_url: url.to_owned(),
                application_id: first.application_id.clone(),
                device_id: first.device_id.clone(),
                user_id: first.user_id.clone(),
            };
            let measured = floor::measure(&input, &floor_clients, args.ceiling_seconds).await?;
            if measured.is_none() {
                eprintln!("warning: pgbench is not on the PATH: no floor measured");
            }
            measured
        }
        None if is_floor => {
            eprintln!("warning: no database to measure the floor on (pass --ceiling-database-url)");
            None
        }
        _ => None,
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

    let mut report = Map::new();
    report.insert("concurrency".into(), json!(args.concurrency));
    report.insert("duration_s".into(), json!(args.duration));
    report.insert("warmup_s".into(), json!(args.warmup));
    report.insert("devices".into(), json!(count));
    report.extend(total.fields(args.duration));
    let flows_per_s = report
        .get("flows_per_s")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    report.insert(
        "floor_flows_per_s".into(),
        json!(floor.map(|f| (f * 100.0).round() / 100.0)),
    );
    report.insert(
        "floor_ratio".into(),
        json!(
            floor
                .filter(|f| *f > 0.0)
                .map(|f| (flows_per_s / f * 1000.0).round() / 1000.0)
        ),
    );
    report.insert(
        "floor_script".into(),
        json!(floor.map(|_| floor::SCRIPT_NAME)),
    );
    report.insert(
        "floor_clients".into(),
        json!(floor.map(|_| floor_clients.clone())),
    );
    let per_flow = before.per_flow(&after, total.completed);
    let server_and_database = ["server_ms_per_flow", "postgres_ms_per_flow"]
        .iter()
        .map(|field| per_flow.get(*field).and_then(Value::as_f64))
        .sum::<Option<f64>>()
        .map(|ms| (ms * 100.0).round() / 100.0);
    report.insert("cpu_ms_per_flow".into(), json!(server_and_database));
    report.insert("cpu".into(), per_flow);
    report.insert(
        "other_cpu_ms_per_s".into(),
        json!(before.other_ms_per_s(&after)),
    );
    report.insert("loadavg_1m".into(), json!(cpu::loadavg_1m()));
    Ok(report)
}
