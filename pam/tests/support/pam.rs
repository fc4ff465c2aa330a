//! A PAM service directory naming the module under test, its settings file,
//! and `pamtester` run through `pam_wrapper`.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{PAMTESTER_LIMIT, SERVICE, finish, module, pam_wrapper};

/// A PAM service directory naming the module, and its settings file.
pub struct Pam {
    dir: tempfile::TempDir,
    api_key: String,
}

/// What one pamtester run showed.
pub struct Run {
    pub succeeded: bool,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Pam {
    /// Writes the service file and `settings` (mode 0600) plus the API key.
    pub fn new(server_url: &str, api_key: &str, settings: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("pam.toml");
        std::fs::write(
            &config,
            format!("server = \"{server_url}\"\napi_key = \"{api_key}\"\n{settings}"),
        )
        .unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        let services = dir.path().join("services");
        std::fs::create_dir(&services).unwrap();
        std::fs::write(
            services.join(SERVICE),
            format!(
                "auth required {} config={}\n",
                module().display(),
                config.display()
            ),
        )
        .unwrap();
        Self {
            dir,
            api_key: api_key.to_owned(),
        }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("pam.toml")
    }

    /// `pamtester SERVICE USER authenticate`, feeding each stdout line to
    /// `on_line` as it comes.
    pub fn authenticate(&self, user: &str, on_line: impl FnMut(&str)) -> Run {
        let started = Instant::now();
        // pam_wrapper is preloaded into stdbuf and env too, but switched on
        // (PAM_WRAPPER=1) only in pamtester, so only pamtester makes (and
        // removes) its /tmp/pam.* directory.
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "env",
                "PAM_WRAPPER=1",
                "pamtester",
                "-v",
                SERVICE,
                user,
            ])
            .arg("authenticate")
            .env("LD_PRELOAD", pam_wrapper().unwrap())
            .env("PAM_WRAPPER_SERVICE_DIR", self.dir.path().join("services"))
            .env("PAM_WRAPPER_DEBUGLEVEL", "2")
            .env_remove("PAM_WRAPPER")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (status, stdout, stderr) = finish(&mut child, PAMTESTER_LIMIT, on_line);
        let status = status.expect("pamtester did not finish within 45 s");
        let run = Run {
            succeeded: status.success(),
            stdout,
            stderr,
            took: started.elapsed(),
        };
        assert!(
            !run.stdout.contains(&self.api_key) && !run.stderr.contains(&self.api_key),
            "the API key was shown or logged:\n{}\n{}",
            run.stdout,
            run.stderr
        );
        run
    }
}

impl Run {
    /// Whether the person saw `text` (the conversation, on stdout).
    pub fn shows(&self, text: &str) -> bool {
        self.stdout.contains(text)
    }

    /// Whether stderr (pamtester's verdict, the module's syslog lines) has `text`.
    pub fn stderr_has(&self, text: &str) -> bool {
        self.stderr.contains(text)
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stdout:\n{}stderr:\n{}", self.stdout, self.stderr)
    }
}
