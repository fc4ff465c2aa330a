//! CPU and memory figures from `/proc`: the server's and the load
//! generator's CPU time, the PostgreSQL backends serving the run's database
//! and the cluster's own background processes, the machine's process CPU
//! time (so the rest — the machine's other load — can be told apart), the
//! load average, and a process's resident set.

use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};

/// Clock ticks per second of `/proc` times (USER_HZ, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// CPU seconds spent so far, per party.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    server_s: f64,
    postgres_s: f64,
    postgres_cluster_s: f64,
    bench_s: f64,
    machine_s: f64,
    wall: Instant,
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

/// Seconds all CPUs spent running processes since boot: the user, nice and
/// system columns of `/proc/stat` — the time `/proc/PID/stat` attributes to
/// processes (interrupt time, idle, I/O wait and steal are left out).
fn machine_cpu(stat: &str) -> f64 {
    let Some(line) = stat.lines().find(|line| line.starts_with("cpu ")) else {
        return 0.0;
    };
    line.split_whitespace()
        .skip(1)
        .take(3)
        .filter_map(|v| v.parse::<f64>().ok())
        .sum::<f64>()
        / TICKS_PER_S
}

/// Whose work a PostgreSQL process does, from its title.
#[derive(Debug, PartialEq, Eq)]
enum PostgresRole {
    /// A backend (or autovacuum worker) of the run's database.
    Run,
    /// Another database's backend: someone else's load.
    Other,
    /// The postmaster and the cluster's background processes (WAL writer,
    /// checkpointer, …), which work for every database, the run's included.
    Cluster,
}

/// Classifies a process whose command is `postgres` by its `cmdline`.
fn postgres_role(cmdline: &str, database: Option<&str>) -> PostgresRole {
    let Some(title) = cmdline.strip_prefix("postgres: ") else {
        return PostgresRole::Cluster;
    };
    let title = format!("{} ", title.trim_end());
    if database.is_some_and(|db| title.contains(&format!(" {db} "))) {
        return PostgresRole::Run;
    }
    // Client backends name their peer, `host(port)` or `[local]`.
    let is_backend = title.contains("[local]")
        || title
            .split_whitespace()
            .any(|word| word.ends_with(')') && word.contains('('));
    if is_backend || title.contains("autovacuum worker") {
        PostgresRole::Other
    } else {
        PostgresRole::Cluster
    }
}

/// CPU seconds of the run database's backends and of the cluster's own
/// processes.
fn postgres_cpu(database: Option<&str>) -> (f64, f64) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return (0.0, 0.0);
    };
    let mut run = 0.0;
    let mut cluster = 0.0;
    for entry in entries.flatten() {
        let is_pid = entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit());
        if !is_pid {
            continue;
        }
        let path = entry.path();
        let is_postgres =
            std::fs::read_to_string(path.join("comm")).is_ok_and(|comm| comm.trim() == "postgres");
        if !is_postgres {
            continue;
        }
        let Ok(cmdline) = std::fs::read(path.join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        match postgres_role(&cmdline, database) {
            PostgresRole::Run => run += process_cpu(&path.join("stat")),
            PostgresRole::Cluster => cluster += process_cpu(&path.join("stat")),
            PostgresRole::Other => {}
        }
    }
    (run, cluster)
}

/// Rounds to two decimals.
fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

impl CpuSample {
    /// Takes a sample now. Without `server_pid` the server's CPU counts as
    /// the machine's other load; without `database`, so do the backends.
    pub fn take(server_pid: Option<u32>, database: Option<&str>) -> Self {
        let (postgres_s, postgres_cluster_s) = postgres_cpu(database);
        Self {
            server_s: server_pid
                .map(|pid| process_cpu(Path::new(&format!("/proc/{pid}/stat"))))
                .unwrap_or(0.0),
            postgres_s,
            postgres_cluster_s,
            bench_s: process_cpu(Path::new("/proc/self/stat")),
            machine_s: std::fs::read_to_string("/proc/stat")
                .map(|stat| machine_cpu(&stat))
                .unwrap_or(0.0),
            wall: Instant::now(),
        }
    }

    /// CPU milliseconds per flow between `self` and the later sample
    /// `after`, per party.
    pub fn per_flow(&self, after: &Self, flows: u64) -> Value {
        let per = |delta: f64| {
            if flows == 0 {
                Value::Null
            } else {
                json!(round2(delta * 1000.0 / flows as f64))
            }
        };
        json!({
            "server_ms_per_flow": per(after.server_s - self.server_s),
            "postgres_ms_per_flow": per(after.postgres_s - self.postgres_s),
            "postgres_cluster_ms_per_flow":
                per(after.postgres_cluster_s - self.postgres_cluster_s),
            "bench_ms_per_flow": per(after.bench_s - self.bench_s),
        })
    }

    /// CPU milliseconds per second of wall time that everything but the
    /// server, PostgreSQL (the run's backends and the cluster's own
    /// processes) and the bench used between `self` and `after`: the
    /// machine's other load. 1000 is one core busy all the time.
    pub fn other_ms_per_s(&self, after: &Self) -> Option<f64> {
        let wall = after.wall.duration_since(self.wall).as_secs_f64();
        if wall <= 0.0 {
            return None;
        }
        let measured = (after.server_s - self.server_s)
            + (after.postgres_s - self.postgres_s)
            + (after.postgres_cluster_s - self.postgres_cluster_s)
            + (after.bench_s - self.bench_s);
        let other = (after.machine_s - self.machine_s - measured).max(0.0);
        Some(round2(other * 1000.0 / wall))
    }
}

/// The 1-minute load average (`/proc/loadavg`).
pub fn loadavg_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_cpu_sums_user_nice_and_system() {
        let stat = "cpu  100 50 250 9000 40 10 20 5 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert!((machine_cpu(stat) - 4.0).abs() < 1e-9);
    }

    #[test]
    fn backends_of_the_run_database_are_the_runs() {
        let title = "postgres: 15/main: postgres assent_bench 127.0.0.1(51234) idle";
        assert_eq!(
            postgres_role(title, Some("assent_bench")),
            PostgresRole::Run
        );
    }

    #[test]
    fn backends_of_other_databases_are_other_load() {
        let tcp = "postgres: 15/main: postgres assent_test_1 127.0.0.1(51234) idle";
        let local = "postgres: 15/main: postgres other [local] SELECT";
        assert_eq!(
            postgres_role(tcp, Some("assent_bench")),
            PostgresRole::Other
        );
        assert_eq!(
            postgres_role(local, Some("assent_bench")),
            PostgresRole::Other
        );
    }

    #[test]
    fn background_processes_and_the_postmaster_are_the_clusters() {
        for cmdline in [
            "postgres: 15/main: walwriter ",
            "postgres: 15/main: checkpointer ",
            "/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main",
        ] {
            assert_eq!(
                postgres_role(cmdline, Some("assent_bench")),
                PostgresRole::Cluster,
                "{cmdline}"
            );
        }
    }

    #[test]
    fn database_name_is_the_last_path_segment() {
        assert_eq!(
            database_name("postgres://postgres@127.0.0.1:5432/assent_bench?sslmode=disable")
                .as_deref(),
            Some("assent_bench")
        );
        assert_eq!(database_name("postgres://postgres@127.0.0.1:5432"), None);
    }
}
