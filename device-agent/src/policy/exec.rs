//! The `exec:CMD` policy: `sh -c CMD` reads the request as one JSON object on
//! stdin; exit status 0 accepts, anything else (including a timeout or a
//! command that cannot start) denies with reason `policy`.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::{Confirmation, DenyReason, Verdict};

const DENY: Verdict = Verdict::Deny(DenyReason::Policy);

/// Runs `command` for `request`; `None` when cancelled (the child is killed).
pub(super) async fn decide(
    command: &str,
    request: &Confirmation,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Option<Verdict> {
    let mut input = match serde_json::to_vec(request) {
        Ok(input) => input,
        Err(error) => {
            tracing::warn!(%error, "cannot encode the request for the policy command");
            return Some(DENY);
        }
    };
    input.push(b'\n');
    let mut child = match Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        // A backstop: if this future is dropped, the child must not outlive it.
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!(%error, "cannot start the policy command");
            return Some(DENY);
        }
    };
    let stdin = child.stdin.take();
    let finished = async {
        if let Some(mut stdin) = stdin {
            // A command may ignore its input and exit early: a broken pipe is fine.
            let _ = stdin.write_all(&input).await;
        }
        child.wait().await
    };
    let ended = tokio::select! {
        status = finished => Ended::Exited(status),
        () = tokio::time::sleep(timeout) => Ended::TimedOut,
        () = cancel.cancelled() => Ended::Cancelled,
    };
    let status = match ended {
        Ended::Exited(status) => status,
        Ended::TimedOut => {
            tracing::warn!(
                timeout_ms = timeout.as_millis(),
                "policy command timed out; denying"
            );
            kill(&mut child).await;
            return Some(DENY);
        }
        Ended::Cancelled => {
            tracing::info!("request withdrawn; stopping the policy command");
            kill(&mut child).await;
            return None;
        }
    };
    match status {
        Ok(status) if status.success() => Some(Verdict::Accept),
        Ok(status) => {
            tracing::info!(%status, "policy command refused the login");
            Some(DENY)
        }
        Err(error) => {
            tracing::warn!(%error, "cannot wait for the policy command");
            Some(DENY)
        }
    }
}

/// How the wait for the command ended.
enum Ended {
    Exited(std::io::Result<std::process::ExitStatus>),
    TimedOut,
    Cancelled,
}

/// Kills and reaps the child, so no zombie or stray process remains.
async fn kill(child: &mut Child) {
    if let Err(error) = child.kill().await {
        tracing::warn!(%error, "cannot kill the policy command");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::tests::sample_confirmation;
    use super::*;

    async fn run(command: &str, timeout: Duration) -> Option<Verdict> {
        decide(
            command,
            &sample_confirmation(),
            timeout,
            &CancellationToken::new(),
        )
        .await
    }

    #[tokio::test]
    async fn exit_zero_accepts() {
        assert_eq!(
            run("exit 0", Duration::from_secs(5)).await,
            Some(Verdict::Accept)
        );
    }

    #[tokio::test]
    async fn nonzero_exit_denies_by_policy() {
        assert_eq!(run("exit 1", Duration::from_secs(5)).await, Some(DENY));
    }

    #[tokio::test]
    async fn the_command_reads_the_request_as_json() {
        let command = r#"grep -q '"application_name":"Example Shop"'"#;
        assert_eq!(
            run(command, Duration::from_secs(5)).await,
            Some(Verdict::Accept)
        );
        let command = r#"grep -q '"application_name":"Other"'"#;
        assert_eq!(run(command, Duration::from_secs(5)).await, Some(DENY));
    }

    #[tokio::test]
    async fn a_slow_command_is_denied_at_the_timeout() {
        let started = Instant::now();
        assert_eq!(run("sleep 10", Duration::from_secs(1)).await, Some(DENY));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn cancellation_kills_the_child_quickly() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let command = format!("echo $$ > '{}'; exec sleep 30", pid_file.display());
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        let request = sample_confirmation();
        let started = Instant::now();
        let (verdict, ()) = tokio::join!(
            decide(&command, &request, Duration::from_secs(60), &cancel),
            async {
                while !pid_file.exists() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                trigger.cancel();
            }
        );
        assert_eq!(verdict, None);
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let proc_dir = std::path::Path::new("/proc").join(pid.trim());
        assert!(!proc_dir.exists(), "the child {} still runs", pid.trim());
    }
}
