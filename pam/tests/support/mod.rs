//! What the pamtester tests need: the tools (with the workspace's
//! "not run" convention), the workspace's binaries, bounded child processes,
//! a real server and agent ([`processes`]) and a PAM service running the
//! module ([`pam`]).

pub mod pam;
pub mod processes;

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The variable that turns a missing tool into a test failure (the
/// workspace's convention, tests/src/tools.rs).
pub const REQUIRE_TOOLS: &str = "ASSENT_REQUIRE_TOOLS";
/// The PAM service name of the tests.
pub const SERVICE: &str = "assent-test";
/// How long one pamtester run may take before the test kills it.
pub const PAMTESTER_LIMIT: Duration = Duration::from_secs(45);

/// Where Debian (and others) put pam_wrapper's preload library.
pub const PAM_WRAPPER_PATHS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libpam_wrapper.so",
    "/usr/lib/aarch64-linux-gnu/libpam_wrapper.so",
    "/usr/lib64/libpam_wrapper.so",
    "/usr/lib/libpam_wrapper.so",
];

pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

pub fn pam_wrapper() -> Option<&'static str> {
    PAM_WRAPPER_PATHS
        .iter()
        .copied()
        .find(|path| Path::new(path).exists())
}

/// Whether the tools are here: true when they are; otherwise "not run: …"
/// on stderr and false, or a failure when `ASSENT_REQUIRE_TOOLS` is set.
pub fn can_run(test: &str) -> bool {
    let mut missing = Vec::new();
    if !on_path("pamtester") {
        missing.push("pamtester (apt-get install pamtester)");
    }
    if pam_wrapper().is_none() {
        missing.push("pam_wrapper (apt-get install libpam-wrapper)");
    }
    if !on_path("stdbuf") {
        missing.push("stdbuf (apt-get install coreutils)");
    }
    if missing.is_empty() {
        return true;
    }
    let message = format!("{test} needs {}", missing.join(" and "));
    let required = std::env::var(REQUIRE_TOOLS).is_ok_and(|v| !v.is_empty() && v != "0");
    assert!(!required, "{message}; {REQUIRE_TOOLS} is set");
    eprintln!("not run: {message}");
    false
}

/// `target/<profile>/NAME`, next to this test executable's `deps/`.
pub fn artifact(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace` (or `cargo test --workspace`) first",
        path.display()
    );
    path
}

/// The module under test: the `libpam_assent.so` cargo built beside this
/// test executable (in `deps/`; `cargo test` refreshes that one, while
/// `target/<profile>/libpam_assent.so` is refreshed only by `cargo build`).
pub fn module() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().join("libpam_assent.so");
    assert!(path.exists(), "{} is not built", path.display());
    path
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a short command to completion (bounded) and returns its stdout.
pub fn run_ok(command: &mut Command) -> String {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, stdout, stderr) = finish(&mut child, Duration::from_secs(30), |_| {});
    assert!(
        status.is_some_and(|s| s.success()),
        "{command:?} failed ({status:?}): {stdout}{stderr}"
    );
    stdout
}

/// Waits for `child` up to `limit` (killing it after), feeding each stdout
/// line to `on_line` as it arrives; returns the status (None if killed)
/// and what it printed.
pub fn finish(
    child: &mut Child,
    limit: Duration,
    mut on_line: impl FnMut(&str),
) -> (Option<ExitStatus>, String, String) {
    let (lines, received) = mpsc::channel::<String>();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let reader = std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let mut out = String::new();
    let status = loop {
        while let Ok(line) = received.recv_timeout(Duration::from_millis(20)) {
            on_line(&line);
            out.push_str(&line);
            out.push('\n');
        }
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
    };
    reader.join().unwrap();
    for line in received.try_iter() {
        on_line(&line);
        out.push_str(&line);
        out.push('\n');
    }
    (status, out, errors.join().unwrap())
}
