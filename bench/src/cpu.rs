//! CPU and memory figures from `/proc`: the server's and the load
//! generator's CPU time, the PostgreSQL backends serving the run's database,
//! the machine's busy time, and a process's resident set.

use std::path::Path;

/// Clock ticks per second of `/proc/*/stat` times (USER_HZ, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// CPU seconds spent so far, per party.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSample {
    server_s: f64,
    postgres_s: f64,
    bench_s: f64,
    busy_s: f64,
    wall: Option<std::time::Instant>,
}

/// User + system seconds of one process (0 when it is gone).
fn process_cpu(stat: &Path) -> f64 {
    let Ok(text) = std::fs::read_to_string(stat) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let Some(rest) = text.rsplit_once(')').map(|(_, rest)| rest) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / TICKS_PER_S
}

/// Seconds all CPUs were busy since boot (`/proc/stat`, everything but idle and iowait).
fn busy_cpu() -> f64 {
    let Ok(text) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = text.lines().next() else {
        return 0.0;
    };
    let values: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: f64 = values.iter().sum();
    let idle = values.get(3).copied().unwrap_or(0.0) + values.get(4).copied().unwrap_or(0.0);
    (total - idle) / TICKS_PER_S
}

/// CPU seconds of the PostgreSQL backends whose title names `database`.
fn postgres_cpu(database: &str) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let needle = format!(" {database} ");
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|cmd| {
                let cmd = String::from_utf8_lossy(&cmd);
                cmd.starts_with("postgres: ") && cmd.contains(&needle)
            })
        })
        .map(|e| process_cpu(&e.path().join("stat")))
        .sum()
}

impl CpuSample {
    /// Takes a sample now.
    pub fn take(server_pid: Option<u32>, database: Option<&str>) -> Self {
        Self {
            server_s: server_pid
                .map(|pid| process_cpu(Path::new(&format!("/proc/{pid}/stat"))))
                .unwrap_or(0.0),
            postgres_s: database.map(postgres_cpu).unwrap_or(0.0),
            bench_s: process_cpu(Path::new("/proc/self/stat")),
            busy_s: busy_cpu(),
            wall: Some(std::time::Instant::now()),
        }
    }

    /// CPU milliseconds per flow between `self` and the later sample
    /// `after`, and the cores other work used meanwhile.
    pub fn per_flow(&self, after: &Self, flows: u64) -> serde_json::Value {
        let per = |delta: f64| {
            if flows == 0 {
                serde_json::Value::Null
            } else {
                serde_json::json!((delta * 1000.0 / flows as f64 * 100.0).round() / 100.0)
            }
        };
        let server = after.server_s - self.server_s;
        let postgres = after.postgres_s - self.postgres_s;
        let bench = after.bench_s - self.bench_s;
        let busy = after.busy_s - self.busy_s;
        let wall = match (self.wall, after.wall) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
            _ => 0.0,
        };
        let other_cores = if wall > 0.0 {
            ((busy - server - postgres - bench) / wall * 100.0).round() / 100.0
        } else {
            0.0
        };
        serde_json::json!({
            "server_ms_per_flow": per(server),
            "postgres_ms_per_flow": per(postgres),
            "bench_ms_per_flow": per(bench),
            "other_cores": other_cores,
        })
    }
}

/// Resident set of `pid` in KiB (`VmRSS`).
pub fn rss_kb(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The database name of a PostgreSQL URL (`postgres://…/NAME?…`).
pub fn database_name(url: &str) -> Option<String> {
    let path = url.split('?').next()?;
    let name = path.rsplit_once('/')?.1;
    (!name.is_empty() && !name.contains('@')).then(|| name.to_owned())
}
