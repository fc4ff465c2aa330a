//! The `desktop` policy: asks the person logged in to the graphical session
//! through a freedesktop notification (`notify-send -w` with actions, a
//! child in its own process group). Actions: Accept / Deny / Not me, or
//! under number matching the three offered numbers / Deny / Not me. Deny is
//! sent as `cancelled_by_user`, Not me as `not_me` (the fraud report).
//!
//! Nobody answering is not a refusal: when the notification is closed
//! without an action (dismissed, or timed out by the notification server)
//! nothing is sent and the request is left to expire; the server's
//! withdrawal at expiry (or a cancellation, or an answer on another device)
//! closes the notification (SIGINT to `notify-send`, which closes it, then
//! its process group is killed). If no withdrawal comes by
//! [`EXPIRY_GRACE`] after the expiry, the policy gives up with a denial
//! (`policy`), which the server refuses for an expired transaction. A
//! notification that cannot be shown (no session bus, no notification
//! server, no `notify-send`) denies with `policy`, like `prompt` without a
//! terminal.

use std::fmt::Write as _;
use std::time::Duration;

use assent_device::{Answer, DenyReason, Kind, Request, Withdrawn};
use chrono::Utc;
use tokio::process::Command;

use super::exec::child::PolicyChild;

/// The program that shows the notification and prints the chosen action.
const NOTIFY_SEND: &str = "notify-send";
/// How long after the expiry the policy still waits for the server's
/// withdrawal before it gives up.
pub(super) const EXPIRY_GRACE: Duration = Duration::from_secs(30);
/// How long a request without an expiry is shown at most (the server's
/// longest TTL).
const NO_EXPIRY_LIMIT: Duration = Duration::from_secs(600);

/// How long `notify-send` gets to close its notification (it does on
/// SIGINT) before its process group is killed.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

const DENY: Answer = Answer::Deny(DenyReason::Policy);

/// Asks about `request` through a notification; `None` when it was
/// withdrawn first (the notification is closed).
pub(super) async fn decide(request: &Request, cancel: &Withdrawn) -> Option<Answer> {
    let shown_for = request.time_left().unwrap_or(NO_EXPIRY_LIMIT);
    let notification = notification(request, shown_for);
    ask(notification, request, shown_for + EXPIRY_GRACE, cancel).await
}

/// Runs `notification` (a program that prints the chosen action key, or
/// nothing when closed) and turns its result into the answer; gives up
/// after `give_up_after`.
async fn ask(
    notification: Command,
    request: &Request,
    give_up_after: Duration,
    cancel: &Withdrawn,
) -> Option<Answer> {
    let give_up = tokio::time::sleep(give_up_after);
    tokio::pin!(give_up);
    let mut child = match PolicyChild::start(notification) {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!(%error, "cannot run notify-send to ask the person; denying");
            return Some(DENY);
        }
    };
    let ended = tokio::select! {
        ended = child.run(&[]) => ended,
        () = cancel.wait() => {
            tracing::info!("request withdrawn; closing the notification");
            child.interrupt(CLOSE_GRACE).await;
            return None;
        }
        () = &mut give_up => {
            child.interrupt(CLOSE_GRACE).await;
            tracing::warn!("no withdrawal after the expiry; giving up with a denial");
            return Some(DENY);
        }
    };
    let (status, stdout) = match ended {
        Ok(ended) => ended,
        Err(error) => {
            tracing::warn!(%error, "cannot wait for notify-send; denying");
            return Some(DENY);
        }
    };
    let action = String::from_utf8_lossy(&stdout).trim().to_owned();
    if !status.success() {
        tracing::warn!(%status, "the notification could not be shown; denying");
        return Some(DENY);
    }
    if action.is_empty() {
        tracing::info!("notification closed without an answer; leaving the request to expire");
        tokio::select! {
            () = cancel.wait() => return None,
            () = &mut give_up => {
                tracing::warn!("no withdrawal after the expiry; giving up with a denial");
                return Some(DENY);
            }
        }
    }
    let answer = answer_for(request, &action);
    tracing::info!(action, answer = ?answer, "the person answered the notification");
    Some(answer)
}

/// The answer an action key stands for; an unknown key denies (`policy`).
fn answer_for(request: &Request, action: &str) -> Answer {
    let choices = &request.number_choices;
    match action {
        "not_me" => Answer::Deny(DenyReason::NotMe),
        "deny" => Answer::Deny(DenyReason::CancelledByUser),
        "accept" if !choices.is_offered() => Answer::Accept { number: None },
        other => match other.strip_prefix('n').map(|number| choices.pick(number)) {
            Some(Ok(number)) => Answer::Accept {
                number: Some(number),
            },
            _ => {
                tracing::warn!(action = other, "unknown notification action; denying");
                DENY
            }
        },
    }
}

/// `notify-send -w …` for `request`, shown for `shown_for` at most.
fn notification(request: &Request, shown_for: Duration) -> Command {
    let mut command = Command::new(NOTIFY_SEND);
    let timeout_ms = u64::try_from(shown_for.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    command
        .arg("--wait")
        .args(["--app-name", "Assent"])
        // Critical: servers keep it on screen until answered or expired.
        .args(["--urgency", "critical"])
        .args(["--expire-time", &timeout_ms.to_string()])
        .args(["--icon", "dialog-password"]);
    for (key, label) in actions(request) {
        command.arg("--action").arg(format!("{key}={label}"));
    }
    command.arg("--").arg(title(request)).arg(body(request));
    command
}

/// The actions offered, as (key, label).
fn actions(request: &Request) -> Vec<(String, String)> {
    let mut actions: Vec<(String, String)> = if request.number_choices.is_offered() {
        request
            .number_choices
            .as_slice()
            .iter()
            .map(|number| (format!("n{number}"), number.to_string()))
            .collect()
    } else {
        vec![("accept".into(), "Accept".into())]
    };
    actions.push(("deny".into(), "Deny".into()));
    actions.push(("not_me".into(), "Not me".into()));
    actions
}

/// The summary line (escaped: some servers read markup there too).
fn title(request: &Request) -> String {
    format!("Log in to {}?", escape(&request.application_name))
}

/// The body: the message, the context, the expiry and what to do; escaped,
/// since notification servers read markup and the text comes from the
/// application.
fn body(request: &Request) -> String {
    let mut text = escape(&request.message);
    for (key, value) in &request.context {
        let _ = write!(text, "\n{}: {}", escape(key), escape(value));
    }
    if let Some(expires_at) = request.expires_at {
        let left = (expires_at - Utc::now()).num_seconds().max(0);
        let _ = write!(
            text,
            "\nExpires at {} (in {left} s).",
            expires_at.format("%H:%M:%S UTC")
        );
    }
    if request.kind == Kind::Push {
        text.push_str("\nPushed to this device: accept only if you are logging in right now.");
    }
    if request.number_choices.is_offered() {
        let _ = write!(
            text,
            "\nPick the number the login page shows ({}), or Not me.",
            request.number_choices
        );
    }
    text
}

/// `text` with the markup characters escaped.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests;
