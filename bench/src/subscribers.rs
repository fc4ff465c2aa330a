//! `subscribers`: K idle `Subscribe` streams of one key, and what they cost
//! the database while nothing happens — commits per second of the run's
//! database (`pg_stat_database.xact_commit`, every autocommitted read
//! included), before and while they are open, and the machine's other load
//! while they are.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use assent_proto::v1::SubscribeRequest;
use serde_json::{Map, Value, json};
use sqlx::Connection as _;
use tokio::task::JoinSet;

use crate::cli::Args;
use crate::client;
use crate::cpu::{self, CpuSample};
use crate::report;
use crate::server::Target;

/// Streams per HTTP/2 connection.
const STREAMS_PER_CHANNEL: usize = 100;

/// The database's committed transactions so far.
async fn commits(database_url: &str) -> anyhow::Result<i64> {
    let mut conn = sqlx::PgConnection::connect(database_url)
        .await
        .context("cannot connect to the database for its statistics")?;
    // Statistics are a snapshot per transaction: ask for a fresh one.
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut conn)
        .await?;
    let count: i64 = sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut conn)
    .await?;
    Ok(count)
}

/// Commits per second over `seconds`, measured from outside.
async fn commit_rate(database_url: &str, seconds: f64) -> anyhow::Result<f64> {
    let start = Instant::now();
    let before = commits(database_url).await?;
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let after = commits(database_url).await?;
    // The two statistics reads commit too; count them out.
    let delta = (after - before - 2).max(0);
    Ok(delta as f64 / start.elapsed().as_secs_f64())
}

/// Opens `--agents` idle streams for `--duration` seconds.
pub async fn run(
    args: &Args,
    target: &Target,
    database_url: Option<&str>,
) -> anyhow::Result<Map<String, Value>> {
    let database_url = database_url.context("subscribers needs --database-url")?;
    let count = args.agents.max(1);
    let seconds = args.duration.max(1.0);
    let idle = commit_rate(database_url, seconds).await?;
    let channels = client::channels(&target.url, count.div_ceil(STREAMS_PER_CHANNEL)).await?;
    let mut streams = JoinSet::new();
    for n in 0..count {
        let mut rp = client::rp_client(channels[n / STREAMS_PER_CHANNEL].clone(), &target.api_key)?;
        let mut stream = rp
            .subscribe(SubscribeRequest {
                after_cursor: 0,
                from_head: false,
            })
            .await
            .with_context(|| format!("subscription {n} was refused"))?
            .into_inner();
        streams.spawn(async move { while let Ok(Some(_)) = stream.message().await {} });
    }
    // Let the backlog reads settle, then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let database = cpu::database_name(database_url);
    let before = CpuSample::take(target.pid, database.as_deref());
    let open = commit_rate(database_url, seconds).await?;
    let after = CpuSample::take(target.pid, database.as_deref());
    streams.abort_all();
    let mut report = Map::new();
    report.insert("subscribers".into(), json!(count));
    report.insert("duration_s".into(), json!(seconds));
    report.insert(
        "commits_per_s_before".into(),
        json!((idle * 10.0).round() / 10.0),
    );
    report.insert(
        "commits_per_s_open".into(),
        json!((open * 10.0).round() / 10.0),
    );
    report.insert(
        "commits_per_s_added".into(),
        json!(((open - idle) * 10.0).round() / 10.0),
    );
    // A refused subscription ends the run above; nothing else can fail.
    report.extend(report::error_fields(&BTreeMap::new()));
    report.insert(
        "other_cpu_ms_per_s".into(),
        json!(before.other_ms_per_s(&after)),
    );
    report.insert("loadavg_1m".into(), json!(cpu::loadavg_1m()));
    Ok(report)
}
