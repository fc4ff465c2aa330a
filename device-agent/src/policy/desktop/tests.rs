//! Unit tests of the `desktop` policy: what the notification shows and
//! offers, and how its outcome becomes an answer, with real processes
//! standing in for `notify-send` (the real one runs in
//! `tests/tests/desktop.rs` under Xvfb and dunst).

use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::super::tests::{matching_confirmation, sample_confirmation};
use super::*;

/// `sh -c SCRIPT` in place of notify-send.
fn stand_in(script: &str) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg(script);
    command
}

async fn ask_with(script: &str, request: &Request, give_up_after: Duration) -> Option<Answer> {
    ask(
        stand_in(script),
        request,
        give_up_after,
        &Withdrawn::default(),
    )
    .await
}

fn args(command: &Command) -> Vec<String> {
    command
        .as_std()
        .get_args()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_notification_offers_accept_deny_and_not_me() {
    let request = sample_confirmation();
    let command = notification(&request, Duration::from_secs(60));
    assert_eq!(command.as_std().get_program(), "notify-send");
    let args = args(&command);
    assert!(args.contains(&"--wait".to_owned()), "{args:?}");
    for action in ["accept=Accept", "deny=Deny", "not_me=Not me"] {
        assert!(args.contains(&action.to_owned()), "{action} in {args:?}");
    }
    let expire = args.iter().position(|arg| arg == "--expire-time").unwrap();
    assert_eq!(args[expire + 1], "60000");
    // Title and body come last, after `--`, so a message cannot be an option.
    let end = args.iter().position(|arg| arg == "--").unwrap();
    assert_eq!(args[end + 1], "Log in to Example Shop?");
    let body = &args[end + 2];
    assert!(body.starts_with("Sign in from Firefox"), "{body}");
    assert!(body.contains("\nip: 192.0.2.1"), "{body}");
    assert!(body.contains("Expires at "), "{body}");
}

#[test]
fn number_matching_offers_the_numbers_instead_of_accept() {
    let request = matching_confirmation();
    let keys: Vec<String> = actions(&request).into_iter().map(|(key, _)| key).collect();
    assert_eq!(keys, ["n12", "n45", "n78", "deny", "not_me"]);
    let body = body(&request);
    assert!(
        body.contains("Pick the number the login page shows"),
        "{body}"
    );
    assert!(body.contains("Pushed to this device"), "{body}");
}

#[test]
fn markup_from_the_application_is_shown_as_text() {
    let mut request = sample_confirmation();
    request.message = "<b>Urgent</b> & \"now\"".into();
    request.application_name = "<i>Shop</i>".into();
    assert!(body(&request).starts_with("&lt;b&gt;Urgent&lt;/b&gt; &amp; &quot;now&quot;"));
    assert_eq!(title(&request), "Log in to &lt;i&gt;Shop&lt;/i&gt;?");
}

#[test]
fn actions_map_to_answers() {
    let plain = sample_confirmation();
    assert_eq!(
        answer_for(&plain, "accept"),
        Answer::Accept { number: None }
    );
    assert_eq!(
        answer_for(&plain, "deny"),
        Answer::Deny(DenyReason::CancelledByUser)
    );
    assert_eq!(
        answer_for(&plain, "not_me"),
        Answer::Deny(DenyReason::NotMe)
    );
    assert_eq!(answer_for(&plain, "n45"), DENY);
    assert_eq!(answer_for(&plain, "default"), DENY);
    let matching = matching_confirmation();
    assert_eq!(
        answer_for(&matching, "n45"),
        Answer::Accept { number: Some(45) }
    );
    // Accept cannot answer a request that needs a number.
    assert_eq!(answer_for(&matching, "accept"), DENY);
    assert_eq!(answer_for(&matching, "n44"), DENY);
    assert_eq!(
        answer_for(&matching, "not_me"),
        Answer::Deny(DenyReason::NotMe)
    );
}

#[tokio::test]
async fn the_printed_action_is_the_answer() {
    let request = sample_confirmation();
    let limit = Duration::from_secs(5);
    assert_eq!(
        ask_with("echo accept", &request, limit).await,
        Some(Answer::Accept { number: None })
    );
    assert_eq!(
        ask_with("echo not_me", &request, limit).await,
        Some(Answer::Deny(DenyReason::NotMe))
    );
    assert_eq!(
        ask_with("echo n78", &matching_confirmation(), limit).await,
        Some(Answer::Accept { number: Some(78) })
    );
}

#[tokio::test]
async fn a_notification_that_cannot_be_shown_denies_by_policy() {
    let request = sample_confirmation();
    assert_eq!(
        ask_with("exit 1", &request, Duration::from_secs(5)).await,
        Some(DENY)
    );
    let missing = Command::new("/nonexistent/notify-send");
    assert_eq!(
        ask(
            missing,
            &request,
            Duration::from_secs(5),
            &Withdrawn::default()
        )
        .await,
        Some(DENY)
    );
}

#[tokio::test]
async fn a_closed_notification_sends_nothing_until_the_request_is_withdrawn() {
    let request = sample_confirmation();
    let token = CancellationToken::new();
    let withdrawn = Withdrawn::from(token.clone());
    let started = Instant::now();
    let (answer, ()) = tokio::join!(
        ask(
            stand_in("exit 0"),
            &request,
            Duration::from_secs(60),
            &withdrawn
        ),
        async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            token.cancel();
        }
    );
    // No answer: the request was left to the server (withdrawn at expiry).
    assert_eq!(answer, None);
    assert!(started.elapsed() >= Duration::from_millis(500));
}

#[tokio::test]
async fn without_a_withdrawal_the_policy_gives_up_after_the_grace() {
    let started = Instant::now();
    assert_eq!(
        ask_with("exit 0", &sample_confirmation(), Duration::from_millis(300)).await,
        Some(DENY)
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // Also while the notification is still up.
    assert_eq!(
        ask_with(
            "sleep 30",
            &sample_confirmation(),
            Duration::from_millis(300)
        )
        .await,
        Some(DENY)
    );
}

#[tokio::test]
async fn a_withdrawal_closes_the_notification_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = format!("echo $$ > '{}'; exec sleep 30", pid_file.display());
    let token = CancellationToken::new();
    let withdrawn = Withdrawn::from(token.clone());
    let request = sample_confirmation();
    let (answer, pid) = tokio::join!(
        ask(
            stand_in(&script),
            &request,
            Duration::from_secs(60),
            &withdrawn
        ),
        async {
            let pid = loop {
                if let Ok(text) = std::fs::read_to_string(&pid_file)
                    && text.ends_with('\n')
                {
                    break text.trim().to_owned();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            token.cancel();
            pid
        }
    );
    assert_eq!(answer, None);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "the notification process {pid} still runs"
    );
}
