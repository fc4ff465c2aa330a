//! Tools a few tests need from the machine beyond the README's
//! prerequisites (Rust, PostgreSQL, Node.js, Python): a browser, a load
//! balancer, a Compose implementation. Where one is missing the test is
//! not run — it says so, and the build of this crate prints one
//! `warning: … not run …` line naming the tests and what to install —
//! unless `ASSENT_REQUIRE_TOOLS=1` (CI) makes a missing tool a failure.
//!
//! Also compiled into this crate's `build.rs`, so it uses `std` only.

use std::path::{Path, PathBuf};

/// The variable that turns a missing tool into a test failure.
pub const REQUIRE_TOOLS: &str = "ASSENT_REQUIRE_TOOLS";

/// One tool: how to find it and how to install it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// What it is, for people.
    pub name: &'static str,
    /// How to get it.
    pub install: &'static str,
    found: fn() -> bool,
}

impl Tool {
    /// Whether the machine has it.
    pub fn is_found(&self) -> bool {
        (self.found)()
    }
}

/// Whether `program` is on the `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Debian's Chromium (or `$CHROMIUM`).
pub const CHROMIUM: Tool = Tool {
    name: "Chromium",
    install: "apt-get install chromium",
    found: || {
        let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        Path::new(&path).exists()
    },
};

/// The web-login example's Node packages.
pub const WEB_LOGIN_PACKAGES: Tool = Tool {
    name: "the web-login example's Node packages",
    install: "(cd examples/web-login && npm ci)",
    found: || {
        repo()
            .join("examples/web-login/node_modules/playwright-core")
            .exists()
    },
};

/// The webhook tests' receiver packages (`standardwebhooks` from npm).
pub const WEBHOOK_RECEIVER_PACKAGES: Tool = Tool {
    name: "the webhook receiver's Node packages",
    install: "(cd tests/webhook-receiver && npm ci)",
    found: || {
        on_path("node")
            && repo()
                .join("tests/webhook-receiver/node_modules/standardwebhooks")
                .exists()
    },
};

/// The CIBA tests' client packages (`openid-client` and `jose` from npm).
pub const CIBA_CLIENT_PACKAGES: Tool = Tool {
    name: "the CIBA client's Node packages",
    install: "(cd tests/ciba-client && npm ci)",
    found: || {
        on_path("node")
            && repo()
                .join("tests/ciba-client/node_modules/openid-client")
                .exists()
    },
};

/// The Python example's interpreter: a venv in `target/backend-python-venv`
/// with `examples/backend-python/requirements.txt` installed (`.ci/run`
/// makes it).
pub fn backend_python() -> PathBuf {
    repo().join("target/backend-python-venv/bin/python")
}

/// The Python example's packages (grpcio, grpcio-tools, cryptography from
/// PyPI) in their venv.
pub const BACKEND_PYTHON_PACKAGES: Tool = Tool {
    name: "the Python example's packages",
    install: "python3 -m venv target/backend-python-venv && target/backend-python-venv/bin/pip \
              install -r examples/backend-python/requirements.txt",
    found: || {
        let installed = |lib: &Path| {
            let site = lib.join("site-packages");
            site.join("grpc_tools").is_dir() && site.join("cryptography").is_dir()
        };
        backend_python().is_file()
            && std::fs::read_dir(repo().join("target/backend-python-venv/lib"))
                .is_ok_and(|libs| libs.flatten().any(|lib| installed(&lib.path())))
    },
};

/// HAProxy.
pub const HAPROXY: Tool = Tool {
    name: "HAProxy",
    install: "apt-get install haproxy",
    found: || on_path("haproxy"),
};

/// A Compose implementation (no engine needed).
pub const DOCKER_COMPOSE: Tool = Tool {
    name: "docker-compose",
    install: "apt-get install docker-compose",
    found: || on_path("docker-compose"),
};

/// systemd's unit checker.
pub const SYSTEMD_ANALYZE: Tool = Tool {
    name: "systemd-analyze",
    install: "apt-get install systemd",
    found: || on_path("systemd-analyze"),
};

/// The headless desktop: Xvfb, a notification server, the session bus,
/// notify-send and the screenshot tools (`tests/tests/desktop.rs`).
pub const DESKTOP: Tool = Tool {
    name: "a headless desktop (Xvfb, dunst, notify-send, dbus-run-session, xwd, convert)",
    install: "apt-get install xvfb dunst libnotify-bin dbus-x11 x11-apps imagemagick",
    found: || {
        [
            "Xvfb",
            "dunst",
            "dunstctl",
            "notify-send",
            "dbus-run-session",
            "dbus-send",
            "xwd",
            "convert",
        ]
        .iter()
        .all(|program| on_path(program))
    },
};

/// Every test that needs a tool, with its tools (what `build.rs` reports).
pub const NEEDS: &[(&str, &[Tool])] = &[
    ("web_login", &[CHROMIUM, WEB_LOGIN_PACKAGES]),
    ("webhooks", &[WEBHOOK_RECEIVER_PACKAGES]),
    ("ciba", &[CIBA_CLIENT_PACKAGES]),
    ("backend_python", &[BACKEND_PYTHON_PACKAGES]),
    ("rolling_restart", &[HAPROXY]),
    ("neighbours (behind HAProxy)", &[HAPROXY]),
    ("deploy (compose file)", &[DOCKER_COMPOSE]),
    ("deploy (systemd units)", &[SYSTEMD_ANALYZE]),
    ("desktop", &[DESKTOP]),
];

/// Whether missing tools fail the tests (`ASSENT_REQUIRE_TOOLS` set to
/// anything but empty or `0`).
pub fn tools_required() -> bool {
    std::env::var(REQUIRE_TOOLS).is_ok_and(|value| !value.is_empty() && value != "0")
}

/// Whether `test` can run: true when every tool is found. Otherwise it
/// panics naming what to install when tools are required, or says the test
/// is not run (on stderr) and returns false.
pub fn can_run(test: &str, tools: &[Tool]) -> bool {
    let missing: Vec<String> = tools
        .iter()
        .filter(|tool| !tool.is_found())
        .map(|tool| format!("{} ({})", tool.name, tool.install))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!("{test} needs {}", missing.join(" and "));
    assert!(!tools_required(), "{message}; {REQUIRE_TOOLS} is set");
    eprintln!("not run: {message}");
    false
}

/// One line naming every test that will not run here and what to install,
/// or `None` when nothing is missing.
pub fn not_run_summary() -> Option<String> {
    let mut lines = Vec::new();
    for (test, tools) in NEEDS {
        let missing: Vec<&str> = tools
            .iter()
            .filter(|tool| !tool.is_found())
            .map(|tool| tool.install)
            .collect();
        if !missing.is_empty() {
            lines.push(format!("{test} [{}]", missing.join("; ")));
        }
    }
    (!lines.is_empty()).then(|| {
        format!(
            "not run on this machine (tools missing): {} — install them, or set {REQUIRE_TOOLS}=1 \
             to make this a failure",
            lines.join(", ")
        )
    })
}
