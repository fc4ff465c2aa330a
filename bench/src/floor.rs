//! The floor of the same run: `pgbench` runs `sql/floor.sql`, the least
//! durable work one OTP login needs (three committed state changes, each
//! with its event row), against the run's database right before the load;
//! its tps is the flows/s that work alone allows on this machine now.
//! Then the system settles (the server seals the floor's events, the
//! database is vacuumed and checkpointed), so the load does not pay for the
//! floor's writes.
//!
//! The script writes only rows of its own (fresh transaction ids): it never
//! touches the devices, keys or application rows the load uses, so it
//! cannot trip their limits. (The removed `--ceiling server` replayed the
//! server's own statements, strike counters included, and did.)

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::process::Command;

/// The script, built into the binary so the bench is self-contained.
const SCRIPT: &str = include_str!("../sql/floor.sql");

/// Its file name, for the report.
pub const SCRIPT_NAME: &str = "bench/sql/floor.sql";

/// Client counts tried when `--ceiling-clients` is not given; the best wins.
pub const DEFAULT_CLIENTS: [usize; 2] = [16, 64];

/// What the script needs to know about the run.
#[derive(Debug, Clone)]
pub struct FloorInput {
    /// The database (libpq accepts the URL).
    pub database_url: String,
    /// The application's id (the foreign key of the rows written).
    pub application_id: String,
    /// An enrolled device's id (only written into the script's own rows).
    pub device_id: String,
    /// That device's user.
    pub user_id: String,
}

/// Runs pgbench for `seconds` at each of `clients` and returns the best
/// tps; `None` when pgbench is not on the PATH.
pub async fn measure(
    input: &FloorInput,
    clients: &[usize],
    seconds: u32,
) -> anyhow::Result<Option<f64>> {
    let Some(pgbench) = find_pgbench() else {
        return Ok(None);
    };
    let path = std::env::temp_dir().join(format!("assent-bench-floor-{}.sql", std::process::id()));
    std::fs::write(&path, SCRIPT).context("cannot write the pgbench script")?;
    let mut best: Option<f64> = None;
    for &count in clients {
        let tps = run_pgbench(&pgbench, &path, input, count, seconds).await;
        let tps = match tps {
            Ok(tps) => tps,
            Err(error) => {
                let _ = std::fs::remove_file(&path);
                return Err(error);
            }
        };
        best = Some(best.map_or(tps, |b| b.max(tps)));
    }
    let _ = std::fs::remove_file(&path);
    settle(input).await;
    Ok(best)
}

/// Leaves the system as settled as before the floor: the server's audit
/// sealer done with the floor's events (it seals every application's new
/// events every 2 s), the tables vacuumed and analysed, the dirty pages
/// written. Otherwise the load measured right after the floor met the
/// sealer hashing and signing ~10⁵ floor events, autovacuum working
/// through as many dead rows and a checkpoint writing them (c = 1 p50
/// +0.25 ms, server and database CPU per flow +15 %, here). A step that
/// fails (`CHECKPOINT` needs a superuser or `pg_checkpoint`) or the sealer
/// not catching up within 30 s is reported, and the load runs anyway.
async fn settle(input: &FloorInput) {
    use sqlx::Connection as _;
    let mut conn = match sqlx::PgConnection::connect(&input.database_url).await {
        Ok(conn) => conn,
        Err(error) => {
            eprintln!("warning: cannot settle the database after the floor: {error}");
            return;
        }
    };
    let sealed = "SELECT COALESCE((SELECT max(cursor) FROM events WHERE application_id = $1::uuid), 0) \
         <= COALESCE((SELECT max(through_cursor) FROM checkpoints WHERE application_id = $1::uuid), 0)";
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let done: Result<bool, _> = sqlx::query_scalar(sealed)
            .bind(&input.application_id)
            .fetch_one(&mut conn)
            .await;
        match done {
            Ok(true) => break,
            Ok(false) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(false) => {
                eprintln!("warning: the server had not sealed the floor's events within 30 s");
                break;
            }
            Err(error) => {
                eprintln!("warning: cannot tell whether the floor's events are sealed: {error}");
                break;
            }
        }
    }
    for step in ["VACUUM (ANALYZE) transactions, events", "CHECKPOINT"] {
        if let Err(error) = sqlx::raw_sql(step).execute(&mut conn).await {
            eprintln!("warning: `{step}` after the floor failed: {error}");
        }
    }
    let _ = conn.close().await;
}

async fn run_pgbench(
    pgbench: &std::path::Path,
    script: &std::path::Path,
    input: &FloorInput,
    clients: usize,
    seconds: u32,
) -> anyhow::Result<f64> {
    let clients = clients.max(1);
    let output = Command::new(pgbench)
        .arg("-n")
        .args(["-M", "prepared"])
        .arg("-f")
        .arg(script)
        .args(["-c", &clients.to_string()])
        .args(["-j", &clients.min(2).to_string()])
        .args(["-T", &seconds.max(1).to_string()])
        .args(["-D", &format!("app={}", input.application_id)])
        .args(["-D", &format!("device={}", input.device_id)])
        .args(["-D", &format!("user={}", input.user_id)])
        .arg(&input.database_url)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(u64::from(seconds) + 60), output)
        .await
        .context("pgbench did not finish")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pgbench failed: {}{}",
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_tps(&stdout)
}

fn find_pgbench() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("pgbench"))
        .find(|candidate| candidate.is_file())
}

/// The first `tps = N` of pgbench's output.
fn parse_tps(output: &str) -> anyhow::Result<f64> {
    output
        .lines()
        .find_map(|line| line.trim().strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no `tps = ` in pgbench's output: {output}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tps_is_parsed_from_pgbench_output() {
        let output = "latency average = 3.1 ms\ntps = 321.5 (without initial connection time)\n";
        assert_eq!(parse_tps(output).ok(), Some(321.5));
    }

    #[test]
    fn output_without_tps_is_an_error() {
        assert!(parse_tps("pgbench: error: connection refused\n").is_err());
    }

    #[test]
    fn the_script_writes_no_device_key_or_application_row() {
        let statements = SCRIPT.lines().filter(|line| !line.starts_with("--"));
        for statement in statements {
            let lower = statement.to_lowercase();
            for table in ["devices", "api_keys", "applications"] {
                assert!(
                    !lower.contains(&format!("update {table}"))
                        && !lower.contains(&format!("insert into {table}"))
                        && !lower.contains(&format!("delete from {table}")),
                    "floor.sql writes {table}: {statement}"
                );
            }
        }
    }
}
