//! The `prompt` policy: asks on the controlling terminal, one question at a
//! time, and denies (reason `policy`) when stdin is not a terminal, so the
//! default policy never accepts silently.

use std::fs::OpenOptions;
use std::io::{BufRead, IsTerminal, Write};

use chrono::Utc;
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Confirmation, DenyReason, Verdict};

/// Serialises prompts and owns the lines typed on stdin.
#[derive(Debug, Default)]
pub(super) struct Prompter {
    /// Lines read from stdin; started on the first prompt. The mutex is what
    /// makes concurrent requests queue up instead of interleaving questions.
    lines: Mutex<Option<mpsc::Receiver<String>>>,
}

impl Prompter {
    /// Asks about `request` until answered, `deadline` passes (deny) or
    /// `cancel` fires (`None`).
    pub(super) async fn ask(
        &self,
        request: &Confirmation,
        deadline: Option<Instant>,
        cancel: &CancellationToken,
    ) -> Option<Verdict> {
        if !std::io::stdin().is_terminal() {
            tracing::warn!("policy is prompt but stdin is not a terminal; denying");
            return Some(Verdict::Deny(DenyReason::Policy));
        }
        let mut lines = tokio::select! {
            lines = self.lines.lock() => lines,
            () = cancel.cancelled() => return None,
        };
        let lines = lines.get_or_insert_with(spawn_stdin_reader);
        // Whatever was typed before the question does not answer it.
        while lines.try_recv().is_ok() {}
        say(&question(request));
        loop {
            let expired = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                line = lines.recv() => match line {
                    Some(line) => match parse_answer(&line) {
                        Some(verdict) => return Some(verdict),
                        None => say("Please answer y (yes), n (no, not me) or c (cancel): "),
                    },
                    None => {
                        // End of input (Ctrl-D) is the person walking away from the question.
                        tracing::warn!("stdin closed while prompting; denying");
                        return Some(Verdict::Deny(DenyReason::CancelledByUser));
                    }
                },
                () = expired => {
                    say("\n(the request expired)\n");
                    return Some(Verdict::Deny(DenyReason::Policy));
                }
                () = cancel.cancelled() => {
                    say("\n(the request was withdrawn)\n");
                    return None;
                }
            }
        }
    }
}

/// Reads stdin on a plain thread: a blocking terminal read cannot be
/// cancelled, and on a runtime blocking thread it would stall shutdown until
/// the next key press. The thread ends with stdin or with the process.
fn spawn_stdin_reader() -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel(8);
    let spawned = std::thread::Builder::new()
        .name("assent-prompt".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if sender.blocking_send(line).is_err() {
                    break;
                }
            }
        });
    if let Err(error) = spawned {
        // The sender was dropped with the closure: the prompt sees EOF and denies.
        tracing::warn!(%error, "cannot start the terminal reader");
    }
    receiver
}

/// Writes to the controlling terminal, or to stderr when there is none.
fn say(text: &str) {
    let written = OpenOptions::new()
        .write(true)
        .open("/dev/tty")
        .and_then(|mut tty| tty.write_all(text.as_bytes()));
    if written.is_err() {
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
}

/// The question shown for `request`.
fn question(request: &Confirmation) -> String {
    let mut text = format!(
        "\nLog in to {}? {}\n",
        request.application_name, request.message
    );
    for (key, value) in &request.context {
        text.push_str(&format!("  {key}: {value}\n"));
    }
    if let Some(expires_at) = request.expires_at {
        let left = (expires_at - Utc::now()).num_seconds().max(0);
        text.push_str(&format!(
            "Expires at {} (in {left} s).\n",
            expires_at.format("%H:%M:%S UTC")
        ));
    }
    text.push_str("Accept? [y]es / [n]o, not me / [c]ancel: ");
    text
}

/// `y`/`yes` accepts, `n`/`no` denies as "not me", `c`/`cancel` denies as
/// cancelled by the user; anything else asks again.
fn parse_answer(line: &str) -> Option<Verdict> {
    match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Some(Verdict::Accept),
        "n" | "no" => Some(Verdict::Deny(DenyReason::NotMe)),
        "c" | "cancel" => Some(Verdict::Deny(DenyReason::CancelledByUser)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample_confirmation;
    use super::*;

    #[test]
    fn the_question_names_the_application_message_context_and_expiry() {
        let text = question(&sample_confirmation());
        assert!(text.contains("Log in to Example Shop? Sign in from Firefox"));
        assert!(text.contains("ip: 192.0.2.1"));
        assert!(text.contains("Expires at"));
    }

    #[test]
    fn answers_are_yes_or_no_and_nothing_else() {
        assert_eq!(parse_answer(" Y\n"), Some(Verdict::Accept));
        assert_eq!(parse_answer("yes"), Some(Verdict::Accept));
        assert_eq!(parse_answer("n"), Some(Verdict::Deny(DenyReason::NotMe)));
        assert_eq!(
            parse_answer("cancel"),
            Some(Verdict::Deny(DenyReason::CancelledByUser))
        );
        assert_eq!(parse_answer(""), None);
        assert_eq!(parse_answer("sure"), None);
    }

    #[tokio::test]
    async fn without_a_terminal_the_prompt_denies() {
        // Under `cargo test` stdin is not a terminal.
        if std::io::stdin().is_terminal() {
            return;
        }
        let verdict = Prompter::default()
            .ask(&sample_confirmation(), None, &CancellationToken::new())
            .await;
        assert_eq!(verdict, Some(Verdict::Deny(DenyReason::Policy)));
    }
}
