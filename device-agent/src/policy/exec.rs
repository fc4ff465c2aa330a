//! The `exec:CMD` policy: `sh -c CMD` reads the request as one JSON object on
//! stdin and answers in one of two ways.
//!
//! - **A JSON line**: when the first line of stdout (at most 1 KiB) starts
//!   with `{`, it is the answer and wins over the exit status:
//!   `{"decision":"accept"}`, `{"decision":"accept","number":45}` under
//!   number matching, `{"decision":"deny","reason":"not_me"}` (reasons
//!   `not_me`, `cancelled` / `cancelled_by_user`, `policy`; no reason means
//!   `policy`). A line that is not such an object (malformed JSON, an
//!   unknown decision, reason or field, a number where none is offered or
//!   none where one must be) denies with reason `policy`, logged.
//! - **The exit status**, otherwise: 0 accepts, anything else denies with
//!   reason `policy`. Under number matching exit 0 must come with one of the
//!   offered numbers, in decimal, on the first line of stdout; without one
//!   the login is denied with reason `policy`.
//!
//! A timeout or a command that cannot start denies with reason `policy`
//! whatever it printed.

pub(super) mod child;

use std::time::Duration;

use assent_device::Withdrawn;
use serde::Deserialize;

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
    let mut child = match PolicyChild::spawn(command) {
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
    let (status, stdout) = match ended {
        Ok(ended) => ended,
        Err(error) => {
            tracing::warn!(%error, "cannot wait for the policy command");
            return Some(DENY);
        }
    };
    if let Some(line) = json_line(&stdout) {
        return Some(match json_answer(choices, line) {
            Ok(answer) => {
                tracing::info!(%status, "policy command answered in JSON");
                answer
            }
            Err(error) => {
                tracing::warn!(%error, "policy command printed an unusable JSON answer; denying");
                DENY
            }
        });
    }
    if !status.success() {
        tracing::info!(%status, "policy command refused the login");
        return Some(DENY);
    }
    if !choices.is_offered() {
        return Some(Answer::Accept { number: None });
    }
    match picked_number(choices, &stdout) {
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
    }
}

/// The first line of the command's stdout.
fn first_line(stdout: &[u8]) -> &[u8] {
    stdout
        .split(|&byte| byte == b'\n')
        .next()
        .unwrap_or_default()
}

/// The first line when it is meant as a JSON answer (starts with `{`,
/// after white space).
fn json_line(stdout: &[u8]) -> Option<&[u8]> {
    let line = first_line(stdout).trim_ascii();
    line.starts_with(b"{").then_some(line)
}

/// A JSON answer line as printed; every field is checked by [`json_answer`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonAnswer {
    decision: String,
    #[serde(default)]
    number: Option<u32>,
    #[serde(default)]
    reason: Option<String>,
}

/// Why a JSON answer line cannot be used.
#[derive(Debug, thiserror::Error)]
enum InvalidJsonAnswer {
    #[error("not a JSON answer object: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("unknown decision {0:?} (expected accept or deny)")]
    UnknownDecision(String),
    #[error("unknown reason {0:?} (expected not_me, cancelled, cancelled_by_user or policy)")]
    UnknownReason(String),
    #[error("a reason belongs to a denial, not an acceptance")]
    ReasonOnAccept,
    #[error("a number belongs to an acceptance, not a denial")]
    NumberOnDeny,
    #[error("the request offers no numbers, yet the answer picks one")]
    NumberNotOffered,
    #[error("the answer picks no number: {0}")]
    Pick(#[from] InvalidPick),
}

/// The answer named by a JSON line.
fn json_answer(choices: &NumberChoices, line: &[u8]) -> Result<Answer, InvalidJsonAnswer> {
    let answer: JsonAnswer = serde_json::from_slice(line)?;
    match answer.decision.as_str() {
        "accept" if answer.reason.is_some() => Err(InvalidJsonAnswer::ReasonOnAccept),
        "accept" => match (answer.number, choices.is_offered()) {
            (None, false) => Ok(Answer::Accept { number: None }),
            (Some(_), false) => Err(InvalidJsonAnswer::NumberNotOffered),
            (None, true) => Err(InvalidJsonAnswer::Pick(InvalidPick::Empty)),
            (Some(number), true) => Ok(Answer::Accept {
                number: Some(choices.pick(&number.to_string())?),
            }),
        },
        "deny" if answer.number.is_some() => Err(InvalidJsonAnswer::NumberOnDeny),
        "deny" => match answer.reason {
            None => Ok(DENY),
            Some(reason) => DenyReason::parse(&reason)
                .map(Answer::Deny)
                .ok_or(InvalidJsonAnswer::UnknownReason(reason)),
        },
        _ => Err(InvalidJsonAnswer::UnknownDecision(answer.decision)),
    }
}

/// The number on the first line of the command's stdout.
fn picked_number(choices: &NumberChoices, stdout: &[u8]) -> Result<u32, InvalidPick> {
    let text = std::str::from_utf8(first_line(stdout)).map_err(|_| InvalidPick::NotANumber)?;
    choices.pick(text)
}

#[cfg(test)]
mod tests;
