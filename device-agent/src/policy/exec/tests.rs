//! Unit tests of the `exec:` policy against real `sh` commands.

use std::path::Path;
use std::time::Instant;

use super::super::tests::{matching_confirmation, sample_confirmation};
use assent_device::Withdrawn;
use tokio_util::sync::CancellationToken;

use assent_device::DenyReason;

use super::*;

async fn run(command: &str, timeout: Duration) -> Option<Answer> {
    decide(
        command,
        &sample_confirmation(),
        timeout,
        &Withdrawn::default(),
    )
    .await
}

/// Runs `command` for a request offering 12, 45 and 78.
async fn run_matching(command: &str) -> Option<Answer> {
    decide(
        command,
        &matching_confirmation(),
        Duration::from_secs(5),
        &Withdrawn::default(),
    )
    .await
}

const ACCEPT: Option<Answer> = Some(Answer::Accept { number: None });

/// Whether the process is gone (a zombie left for init to reap counts).
fn is_gone(pid: &str) -> bool {
    match std::fs::read_to_string(Path::new("/proc").join(pid).join("stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

async fn wait_for_file(path: &Path) -> String {
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.ends_with('\n')
        {
            return text.trim().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn exit_zero_accepts() {
    assert_eq!(run("exit 0", Duration::from_secs(5)).await, ACCEPT);
}

#[tokio::test]
async fn nonzero_exit_denies_by_policy() {
    assert_eq!(run("exit 1", Duration::from_secs(5)).await, Some(DENY));
}

#[tokio::test]
async fn the_command_reads_the_request_as_json() {
    let command = r#"grep -q '"application_name":"Example Shop"'"#;
    assert_eq!(run(command, Duration::from_secs(5)).await, ACCEPT);
    let command = r#"grep -q '"application_name":"Other"'"#;
    assert_eq!(run(command, Duration::from_secs(5)).await, Some(DENY));
    let command = r#"grep -q '"kind":"OTP".*"number_choices":\[\]'"#;
    assert_eq!(run(command, Duration::from_secs(5)).await, ACCEPT);
}

#[tokio::test]
async fn without_number_matching_stdout_is_ignored() {
    assert_eq!(
        run("echo 45; echo no", Duration::from_secs(5)).await,
        ACCEPT
    );
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
async fn the_printed_number_is_the_pick() {
    let command = r#"grep -q '"kind":"PUSH".*"number_choices":\[12,45,78\]' && echo 45"#;
    assert_eq!(
        run_matching(command).await,
        Some(Answer::Accept { number: Some(45) })
    );
    // Only the first line counts; later output does not disturb the command.
    assert_eq!(
        run_matching("printf ' 78\\r\\nchosen by a test\\n'; seq 1 2000").await,
        Some(Answer::Accept { number: Some(78) })
    );
}

#[tokio::test]
async fn exit_zero_without_an_offered_number_denies_by_policy() {
    for command in [
        "true",
        "echo",
        "echo 13",
        "echo yes",
        "echo; echo 45",
        "head -c 100 /dev/zero | tr '\\0' 4",
    ] {
        assert_eq!(run_matching(command).await, Some(DENY), "{command}");
    }
}

#[tokio::test]
async fn a_number_with_a_failing_exit_denies() {
    assert_eq!(run_matching("echo 45; exit 3").await, Some(DENY));
}

#[tokio::test]
async fn a_process_left_holding_stdout_does_not_delay_the_pick() {
    let started = Instant::now();
    assert_eq!(
        run_matching("printf 12; sleep 3 &").await,
        Some(Answer::Accept { number: Some(12) })
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn the_pick_is_the_first_line_of_stdout() {
    let choices = NumberChoices::parse(&[12, 45, 78]).unwrap();
    assert_eq!(picked_number(&choices, b"45\n"), Ok(45));
    assert_eq!(picked_number(&choices, b"12"), Ok(12));
    assert_eq!(picked_number(&choices, b"78\nextra"), Ok(78));
    assert_eq!(picked_number(&choices, b""), Err(InvalidPick::Empty));
    assert_eq!(picked_number(&choices, b"\n45\n"), Err(InvalidPick::Empty));
    assert_eq!(
        picked_number(&choices, b"4\xff5"),
        Err(InvalidPick::NotANumber)
    );
    assert_eq!(
        picked_number(&choices, b"44\n"),
        Err(InvalidPick::NotAChoice(44))
    );
}

#[tokio::test]
async fn cancellation_kills_the_whole_process_group_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pids");
    // The leader waits on a background grandchild in the same group.
    let command = format!("sleep 30 & echo $$ $! > '{}'; wait", pid_file.display());
    let token = CancellationToken::new();
    let cancel = Withdrawn::from(token.clone());
    let trigger = token.clone();
    let request = sample_confirmation();
    let (verdict, (pids, cancelled_at)) = tokio::join!(
        decide(&command, &request, Duration::from_secs(60), &cancel),
        async {
            let pids = wait_for_file(&pid_file).await;
            let cancelled_at = Instant::now();
            trigger.cancel();
            (pids, cancelled_at)
        }
    );
    assert_eq!(verdict, None);
    assert!(
        cancelled_at.elapsed() < Duration::from_millis(500),
        "{:?}",
        cancelled_at.elapsed()
    );
    for pid in pids.split_whitespace() {
        for _ in 0..50 {
            if is_gone(pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(is_gone(pid), "process {pid} still runs");
    }
}

/// Runs `sh -c 'echo LINE; exit CODE'` for a request without number matching.
async fn run_json(line: &str, code: i32) -> Option<Answer> {
    run(
        &format!("echo '{line}'; exit {code}"),
        Duration::from_secs(5),
    )
    .await
}

#[tokio::test]
async fn a_json_accept_accepts_whatever_the_exit_status() {
    assert_eq!(run_json(r#"{"decision":"accept"}"#, 0).await, ACCEPT);
    // The JSON line wins over the exit status.
    assert_eq!(run_json(r#"{"decision":"accept"}"#, 1).await, ACCEPT);
    assert_eq!(
        run_json(r#"  { "decision" : "accept" }  "#, 0).await,
        ACCEPT
    );
}

#[tokio::test]
async fn a_json_deny_carries_its_reason() {
    for (reason, expected) in [
        ("not_me", DenyReason::NotMe),
        ("cancelled", DenyReason::CancelledByUser),
        ("cancelled_by_user", DenyReason::CancelledByUser),
        ("policy", DenyReason::Policy),
    ] {
        let line = format!(r#"{{"decision":"deny","reason":"{reason}"}}"#);
        // Exit 0 would accept under the exit-status convention: JSON wins.
        assert_eq!(
            run_json(&line, 0).await,
            Some(Answer::Deny(expected)),
            "{reason}"
        );
    }
    assert_eq!(run_json(r#"{"decision":"deny"}"#, 0).await, Some(DENY));
}

#[tokio::test]
async fn a_json_not_me_is_the_fraud_reason_on_the_wire() {
    let answer = run_json(r#"{"decision":"deny","reason":"not_me"}"#, 0).await;
    let Some(Answer::Deny(reason)) = answer else {
        panic!("expected a denial, got {answer:?}");
    };
    // The reason text the decision is signed and sent with.
    assert_eq!(reason.as_str(), "not_me");
    assert_eq!(DenyReason::parse(reason.as_str()), Some(DenyReason::NotMe));
}

#[tokio::test]
async fn a_json_accept_picks_one_of_the_offered_numbers() {
    assert_eq!(
        run_matching(r#"echo '{"decision":"accept","number":45}'"#).await,
        Some(Answer::Accept { number: Some(45) })
    );
    assert_eq!(
        run_matching(r#"echo '{"decision":"deny","reason":"not_me"}'"#).await,
        Some(Answer::Deny(DenyReason::NotMe))
    );
    for line in [
        r#"{"decision":"accept"}"#,
        r#"{"decision":"accept","number":44}"#,
        r#"{"decision":"accept","number":"45"}"#,
        r#"{"decision":"accept","number":-45}"#,
    ] {
        let command = format!("echo '{line}'");
        assert_eq!(run_matching(&command).await, Some(DENY), "{line}");
    }
}

#[tokio::test]
async fn an_unusable_json_line_denies_by_policy() {
    for line in [
        r#"{"decision":"accept""#,
        r#"{"decision":"maybe"}"#,
        r#"{"decision":"ACCEPT"}"#,
        r#"{"decision":"deny","reason":"bored"}"#,
        r#"{"decision":"accept","reason":"not_me"}"#,
        r#"{"decision":"deny","number":45}"#,
        r#"{"decision":"accept","number":45}"#,
        r#"{"decision":"accept","extra":true}"#,
        r#"{"number":45}"#,
        r#"{}"#,
    ] {
        assert_eq!(run_json(line, 0).await, Some(DENY), "{line}");
    }
}

#[tokio::test]
async fn only_a_json_first_line_is_an_answer() {
    // A JSON object on a later line is ordinary output: the exit status decides.
    assert_eq!(
        run(
            r#"echo hello; echo '{"decision":"deny","reason":"not_me"}'"#,
            Duration::from_secs(5)
        )
        .await,
        ACCEPT
    );
    assert_eq!(
        run(
            r#"echo hello; echo '{"decision":"accept"}'; exit 1"#,
            Duration::from_secs(5)
        )
        .await,
        Some(DENY)
    );
}

#[tokio::test]
async fn a_timeout_denies_even_after_a_json_accept() {
    let command = r#"echo '{"decision":"accept"}'; sleep 10"#;
    assert_eq!(run(command, Duration::from_millis(500)).await, Some(DENY));
}

#[tokio::test]
async fn a_chatty_command_is_not_blocked_by_its_own_output() {
    // More than a pipe buffer after the answer line.
    let command = r#"echo '{"decision":"deny","reason":"cancelled"}'; head -c 300000 /dev/zero"#;
    assert_eq!(
        run(command, Duration::from_secs(5)).await,
        Some(Answer::Deny(DenyReason::CancelledByUser))
    );
    assert_eq!(run("seq 1 100000", Duration::from_secs(5)).await, ACCEPT);
}

#[test]
fn json_answers_parse_by_their_fields() {
    let none = NumberChoices::default();
    let offered = NumberChoices::parse(&[12, 45, 78]).unwrap();
    assert_eq!(
        json_answer(&none, br#"{"decision":"accept"}"#).unwrap(),
        ACCEPT.unwrap()
    );
    assert_eq!(
        json_answer(&offered, br#"{"decision":"accept","number":78}"#).unwrap(),
        Answer::Accept { number: Some(78) }
    );
    assert!(matches!(
        json_answer(&offered, br#"{"decision":"accept","number":13}"#),
        Err(InvalidJsonAnswer::Pick(InvalidPick::NotAChoice(13)))
    ));
    assert!(matches!(
        json_answer(&none, br#"{"decision":"deny","reason":"x"}"#),
        Err(InvalidJsonAnswer::UnknownReason(_))
    ));
    assert!(matches!(
        json_answer(&none, b"{nope"),
        Err(InvalidJsonAnswer::Malformed(_))
    ));
    assert_eq!(json_line(b"  {\"a\":1}\nrest"), Some(&b"{\"a\":1}"[..]));
    assert_eq!(json_line(b"45\n{}"), None);
}
