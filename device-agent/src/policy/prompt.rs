//! The `prompt` policy: asks on the controlling terminal, one question at a
//! time, and denies (reason `policy`) when stdin is not a terminal, so the
//! default policy never accepts silently. Under number matching the person
//! types the number the login page shows instead of `y`; after
//! [`MATCHING_TRIES`] answers that name none of the offered numbers the login
//! is denied as cancelled by the user.

use std::fs::OpenOptions;
use std::io::{BufRead, IsTerminal, Write};

use assent_device::Withdrawn;
use chrono::Utc;
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;

use assent_device::Kind;
use assent_device::NumberChoices;
use assent_device::{Answer, DenyReason, Request};

/// How many answers naming none of the offered numbers end the question.
const MATCHING_TRIES: usize = 3;

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
        request: &Request,
        deadline: Option<Instant>,
        cancel: &Withdrawn,
    ) -> Option<Answer> {
        if !std::io::stdin().is_terminal() {
            tracing::warn!("policy is prompt but stdin is not a terminal; denying");
            return Some(Answer::Deny(DenyReason::Policy));
        }
        let mut lines = tokio::select! {
            lines = self.lines.lock() => lines,
            () = cancel.wait() => return None,
        };
        let lines = lines.get_or_insert_with(spawn_stdin_reader);
        // Whatever was typed before the question does not answer it.
        while lines.try_recv().is_ok() {}
        converse(request, lines, deadline, cancel, say).await
    }
}

/// Puts the question, reads `lines` until an answer, the deadline (deny) or
/// `cancel` (`None`), and shows hints through `say`.
async fn converse(
    request: &Request,
    lines: &mut mpsc::Receiver<String>,
    deadline: Option<Instant>,
    cancel: &Withdrawn,
    mut say: impl FnMut(&str),
) -> Option<Answer> {
    say(&question(request));
    let choices = &request.number_choices;
    let mut wrong_answers = 0;
    loop {
        let expired = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            line = lines.recv() => match line {
                Some(line) => match parse_answer(&line, choices) {
                    Ok(verdict) => return Some(verdict),
                    Err(hint) if choices.is_offered() => {
                        wrong_answers += 1;
                        if wrong_answers >= MATCHING_TRIES {
                            tracing::info!("no offered number picked; denying");
                            say("(no number picked; the login is cancelled)\n");
                            return Some(Answer::Deny(DenyReason::CancelledByUser));
                        }
                        say(&hint);
                    }
                    Err(hint) => say(&hint),
                },
                None => {
                    // End of input (Ctrl-D) is the person walking away from the question.
                    tracing::warn!("stdin closed while prompting; denying");
                    return Some(Answer::Deny(DenyReason::CancelledByUser));
                }
            },
            () = expired => {
                say("\n(the request expired)\n");
                return Some(Answer::Deny(DenyReason::Policy));
            }
            () = cancel.wait() => {
                say("\n(the request was withdrawn)\n");
                return None;
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
fn question(request: &Request) -> String {
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
    if request.kind == Kind::Push {
        text.push_str(
            "This request was pushed to your device: accept only if you are logging in right now.\n",
        );
    }
    if request.number_choices.is_offered() {
        text.push_str(&format!(
            "Which number does the login page show? {} ([n]o, not me / [c]ancel): ",
            request.number_choices
        ));
    } else {
        text.push_str("Accept? [y]es / [n]o, not me / [c]ancel: ");
    }
    text
}

/// `n`/`no` denies as "not me" and `c`/`cancel` as cancelled by the user;
/// under number matching one of the offered numbers accepts with that number,
/// otherwise `y`/`yes` accepts. Anything else is `Err` with the hint to show
/// before asking again.
fn parse_answer(line: &str, choices: &NumberChoices) -> Result<Answer, String> {
    match line.trim().to_ascii_lowercase().as_str() {
        "n" | "no" => return Ok(Answer::Deny(DenyReason::NotMe)),
        "c" | "cancel" => return Ok(Answer::Deny(DenyReason::CancelledByUser)),
        "y" | "yes" if !choices.is_offered() => return Ok(Answer::Accept { number: None }),
        _ => {}
    }
    if !choices.is_offered() {
        return Err("Please answer y (yes), n (no, not me) or c (cancel): ".to_owned());
    }
    match choices.pick(line) {
        Ok(number) => Ok(Answer::Accept {
            number: Some(number),
        }),
        Err(error) => Err(format!(
            "({error}) Which number does the login page show? Type {choices}, n (not me) or c (cancel): "
        )),
    }
}

#[cfg(test)]
mod tests;
