//! The database ceiling of the same run: `pgbench` runs `sql/flow.sql` (one
//! OTP flow's statements, as the server issues them) or `sql/push.sql` (one
//! push login's) against the run's database at the load's concurrency, and
//! its tps is the flows/s the database alone would allow.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use tokio::process::Command;

/// Which flow the ceiling replays; the scripts are built into the binary so
/// the bench is self-contained.
#[derive(Debug, Clone, Copy)]
pub enum Script {
    /// `sql/flow.sql`: one OTP flow.
    Flow,
    /// `sql/push.sql`: one push login.
    Push,
    /// `sql/floor.sql`: the least durable work of one OTP login.
    Floor,
}

impl Script {
    fn sql(self) -> &'static str {
        match self {
            Self::Flow => include_str!("../sql/flow.sql"),
            Self::Push => include_str!("../sql/push.sql"),
            Self::Floor => include_str!("../sql/floor.sql"),
        }
    }

    /// The script's file name, for the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Flow => "bench/sql/flow.sql",
            Self::Push => "bench/sql/push.sql",
            Self::Floor => "bench/sql/floor.sql",
        }
    }
}

/// What the script needs to know about the run.
#[derive(Debug, Clone)]
pub struct CeilingInput {
    /// The database (libpq accepts the URL).
    pub database_url: String,
    /// The application's id.
    pub application_id: String,
    /// The API key text (`ak_…`); its id is looked up like the server does.
    pub api_key: String,
    /// An enrolled device.
    pub device_id: String,
    /// That device's user.
    pub user_id: String,
}

/// The advisory lock key the server takes for `app`: the UUID's first 8
/// bytes as a big-endian i64.
pub fn lock_key(app: &str) -> anyhow::Result<i64> {
    let hex: String = app.chars().filter(|c| *c != '-').take(16).collect();
    let high = u64::from_str_radix(&hex, 16).context("bad application id")?;
    Ok(i64::from_be_bytes(high.to_be_bytes()))
}

/// The id part of an API key (`ak_` + base64url(16-byte id ‖ secret)) as UUID text.
pub fn api_key_id(key: &str) -> anyhow::Result<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key.trim_start_matches("ak_"))
        .context("the API key is not base64url")?;
    let id = bytes.get(..16).context("the API key is too short")?;
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// Runs pgbench for `seconds` at `clients`; `None` when pgbench is not installed.
pub async fn measure(
    script: Script,
    input: &CeilingInput,
    clients: usize,
    seconds: u32,
) -> anyhow::Result<Option<f64>> {
    let Some(pgbench) = find_pgbench() else {
        return Ok(None);
    };
    let path = std::env::temp_dir().join(format!("assent-bench-flow-{}.sql", std::process::id()));
    std::fs::write(&path, script.sql()).context("cannot write the pgbench script")?;
    let clients = clients.max(1);
    let output = Command::new(pgbench)
        .arg("-n")
        .args(["-M", "prepared"])
        .arg("-f")
        .arg(&path)
        .args(["-c", &clients.to_string()])
        .args(["-j", &clients.min(2).to_string()])
        .args(["-T", &seconds.max(1).to_string()])
        .args(["-D", &format!("app={}", input.application_id)])
        .args(["-D", &format!("lock={}", lock_key(&input.application_id)?)])
        .args(["-D", &format!("key={}", api_key_id(&input.api_key)?)])
        .args(["-D", &format!("device={}", input.device_id)])
        .args(["-D", &format!("user={}", input.user_id)])
        .arg(&input.database_url)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(u64::from(seconds) + 60), output)
        .await
        .context("pgbench did not finish")??;
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pgbench failed: {}{}",
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_tps(&stdout).map(Some)
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
    fn lock_key_is_the_big_endian_high_half() {
        assert_eq!(
            lock_key("00000000-0000-0001-0000-000000000000").ok(),
            Some(1)
        );
        assert_eq!(
            lock_key("ffffffff-ffff-ffff-0000-000000000000").ok(),
            Some(-1)
        );
    }

    #[test]
    fn api_key_id_is_the_first_16_bytes() {
        let mut bytes = vec![0u8; 48];
        bytes[15] = 0xab;
        let key = format!(
            "ak_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes)
        );
        assert_eq!(
            api_key_id(&key).ok().as_deref(),
            Some("00000000-0000-0000-0000-0000000000ab")
        );
    }

    #[test]
    fn tps_is_parsed_from_pgbench_output() {
        let output = "latency average = 3.1 ms\ntps = 321.5 (without initial connection time)\n";
        assert_eq!(parse_tps(output).ok(), Some(321.5));
    }
}
