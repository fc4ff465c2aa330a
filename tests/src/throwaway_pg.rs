//! A throwaway PostgreSQL cluster for the suite when no test database URL
//! is given and nothing listens on 127.0.0.1:5432: started once from the
//! installed binaries (`initdb`, `pg_ctl`) in a temporary directory, shared
//! by every test process of the run, and stopped by a small watchdog once
//! the last of them has exited.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs::File;
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Where the installed PostgreSQL server binaries are, newest version first.
fn server_bin_dir() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file())
        .collect();
    found.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().or_else(|| {
        let bin = Command::new("pg_config").arg("--bindir").output().ok()?;
        let bin = PathBuf::from(String::from_utf8_lossy(&bin.stdout).trim());
        bin.join("initdb").is_file().then_some(bin)
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A command run as the cluster's owner (PostgreSQL refuses root).
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn listening(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
}

/// The admin URL of the run's throwaway cluster, starting it if needed.
pub fn admin_url() -> String {
    let Some(bin) = server_bin_dir() else {
        panic!(
            "no PostgreSQL to test against: nothing listens on 127.0.0.1:5432, no \
             ASSENT_TEST_DATABASE_URL is set, and no server binaries were found \
             (/usr/lib/postgresql/*/bin). Install PostgreSQL (apt-get install postgresql) or \
             point ASSENT_TEST_DATABASE_URL at a server the tests may create databases on."
        )
    };
    let dir = std::env::temp_dir().join("assent-test-pg");
    std::fs::create_dir_all(dir.join("users")).unwrap();
    if is_root() {
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status();
    }
    // One process at a time decides whether to start it.
    let lock = File::create(dir.join("lock")).unwrap();
    lock.lock().unwrap();
    // This process uses the cluster until it exits.
    File::create(dir.join("users").join(std::process::id().to_string())).unwrap();
    let port_file = dir.join("port");
    let running = std::fs::read_to_string(&port_file)
        .ok()
        .and_then(|p| p.trim().parse::<u16>().ok())
        .filter(|&port| listening(port));
    let port = match running {
        Some(port) => port,
        None => start(&bin, &dir),
    };
    std::fs::write(&port_file, port.to_string()).unwrap();
    drop(lock);
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

/// initdb (once) and pg_ctl start on a free port; a watchdog stops it.
fn start(bin: &Path, dir: &Path) -> u16 {
    let data = dir.join("data");
    if !data.join("PG_VERSION").exists() {
        let made = as_owner(&bin.join("initdb"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .unwrap();
        assert!(made.success(), "initdb of the throwaway cluster failed");
    }
    let port = crate::ports::free_port();
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
         -c synchronous_commit=off -c max_connections=300",
        dir.display()
    );
    let started = as_owner(&bin.join("pg_ctl"))
        .args(["-w", "-D"])
        .arg(&data)
        .args(["-l"])
        .arg(dir.join("log"))
        .args(["-o", &options, "start"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(
        started.success(),
        "pg_ctl start failed (see {})",
        dir.join("log").display()
    );
    // The watchdog: once no process that used the cluster is alive for a
    // few seconds, stop it.
    let watchdog = format!(
        "cd {dir}; idle=0; while [ $idle -lt 3 ]; do sleep 2; alive=0; \
         for f in users/*; do [ -e \"$f\" ] || continue; \
         if kill -0 \"${{f#users/}}\" 2>/dev/null; then alive=1; else rm -f \"$f\"; fi; done; \
         if [ $alive = 1 ]; then idle=0; else idle=$((idle+1)); fi; done; \
         {owner} {pg_ctl} -D {data} -m fast stop >/dev/null 2>&1; rm -f port",
        dir = dir.display(),
        owner = if is_root() {
            "runuser -u postgres --"
        } else {
            ""
        },
        pg_ctl = bin.join("pg_ctl").display(),
        data = data.display(),
    );
    let mut spawned = Command::new("setsid");
    spawned
        .args(["sh", "-c", &watchdog])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _ = spawned.spawn();
    let mut note = File::create(dir.join("started")).unwrap();
    let _ = writeln!(note, "port {port}");
    port
}
