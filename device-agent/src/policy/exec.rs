//! The `exec:CMD` policy: `sh -c CMD` reads the request as one JSON object on
//! stdin; exit status 0 accepts, anything else (including a timeout or a
//! command that cannot start) denies with reason `policy`. Under number
//! matching exit 0 must come with one of the offered numbers, in decimal, on
//! the first line of stdout (at most 64 bytes are read); without one the
//! login is denied with reason `policy`.

mod child;

use std::time::Duration;

use assent_device::Withdrawn;

use self::child::PolicyChild;
use assent_device::request::{InvalidPick, NumberChoices};
use assent_device::{Answer, DenyReason, Request};

const DENY: Answer = Answer::Deny(DenyReason::Policy);

/// Runs `command` for `request`; `None` when cancelled (the command's process
/// group is killed).
pub(super) async fn decide(
    command: &str,
    request: &Request,
    timeout: Duration,
    cancel: &Withdrawn,
) -> Option<Answer> {
    let mut input = match serde_json::to_vec(request) {
        Ok(input) => input,
        Err(error) => {
            tracing::warn!(%error, "cannot encode the request for the policy command");
            return Some(DENY);
        }
    };
    input.push(b'\n');
    let choices = &request.number_choices;
    let mut child = match PolicyChild::spawn(command, choices.is_offered()) {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!(%error, "cannot start the policy command");
            return Some(DENY);
        }
    };
    let ended = tokio::select! {
        finished = child.run(&input) => finished,
        () = tokio::time::sleep(timeout) => {
            tracing::warn!(
                timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                "policy command timed out; denying"
            );
            child.kill().await;
            return Some(DENY);
        }
        () = cancel.wait() => {
            tracing::info!("request withdrawn; stopping the policy command");
            child.kill().await;
            return None;
        }
    };
    match ended {
        Ok((status, _)) if status.success() && !choices.is_offered() => {
            Some(Answer::Accept { number: None })
        }
        Ok((status, stdout)) if status.success() => match picked_number(choices, &stdout) {
            Ok(number) => Some(Answer::Accept {
                number: Some(number),
            }),
            Err(error) => {
                tracing::warn!(
                    %error,
                    "policy command exited 0 without printing one of the offered numbers; denying"
                );
                Some(DENY)
            }
        },
        Ok((status, _)) => {
            tracing::info!(%status, "policy command refused the login");
            Some(DENY)
        }
        Err(error) => {
            tracing::warn!(%error, "cannot wait for the policy command");
            Some(DENY)
        }
    }
}

/// The number on the first line of the command's stdout.
fn picked_number(choices: &NumberChoices, stdout: &[u8]) -> Result<u32, InvalidPick> {
    let line = stdout
        .split(|&byte| byte == b'\n')
        .next()
        .unwrap_or_default();
    let text = std::str::from_utf8(line).map_err(|_| InvalidPick::NotANumber)?;
    choices.pick(text)
}

#[cfg(test)]
mod tests;
