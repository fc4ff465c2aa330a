//! Push confirmations, number matching and cancellations, against the
//! scripted `DeviceService` (which verifies every decision signature,
//! including the picked number, with `assent_proto::signing`).

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use assent_agent::Policy;
use assent_proto::v1::TransactionState;

use support::{Agent, Fake, is_gone, wait_for_line};

/// The fake's login page shows the first of these.
const CHOICES: [u32; 3] = [45, 12, 78];

/// Runs a pushed request through `policy`; returns its outcome and the
/// number the device sent.
async fn decide_push(policy: Policy, choices: &[u32]) -> (TransactionState, String, u32) {
    let fake = Fake::default();
    let agent = Agent::start(&fake, None, policy).await;
    fake.wait_connected().await;
    let id = fake.push_live(choices).await;
    let (state, reason) = fake.wait_for_outcome(&id).await;
    let number = {
        let world = fake.0.lock().unwrap();
        assert_eq!(world.decisions.len(), 1);
        world.decisions[0].number
    };
    agent.stop().await;
    (state, reason, number)
}

#[tokio::test]
async fn a_push_pending_at_connect_is_decided_by_the_policy() {
    let fake = Fake::default();
    // Created before the daemon connects: the server sends it right after Ready.
    let id = fake.push(&[]);
    let agent = Agent::start(&fake, None, Policy::Accept).await;
    let (state, reason) = fake.wait_for_outcome(&id).await;
    assert_eq!((state, reason.as_str()), (TransactionState::Accepted, ""));
    assert_eq!(fake.0.lock().unwrap().decisions[0].number, 0);
    agent.stop().await;
}

#[tokio::test]
async fn a_live_push_is_denied_by_the_deny_policy() {
    let (state, reason, number) = decide_push(Policy::Deny, &[]).await;
    assert_eq!(
        (state, reason.as_str(), number),
        (TransactionState::Denied, "policy", 0)
    );
}

#[tokio::test]
async fn number_matching_accepts_with_the_number_the_command_prints() {
    let policy = Policy::Exec("grep -q '\"number_choices\":\\[45,12,78\\]' && echo 45".into());
    let (state, reason, number) = decide_push(policy, &CHOICES).await;
    assert_eq!((state, reason.as_str()), (TransactionState::Accepted, ""));
    assert_eq!(number, 45, "signed and sent with the pick");
}

#[tokio::test]
async fn a_wrong_pick_is_sent_as_picked_and_denied_by_the_server() {
    let (state, reason, number) = decide_push(Policy::Exec("echo 12".into()), &CHOICES).await;
    assert_eq!(
        (state, reason.as_str()),
        (TransactionState::Denied, "wrong_number")
    );
    assert_eq!(number, 12);
}

#[tokio::test]
async fn a_json_not_me_from_the_command_is_signed_and_sent_as_not_me() {
    let policy = Policy::Exec(r#"echo '{"decision":"deny","reason":"not_me"}'"#.into());
    let (state, reason, number) = decide_push(policy, &CHOICES).await;
    assert_eq!(
        (state, reason.as_str(), number),
        (TransactionState::Denied, "not_me", 0)
    );
}

#[tokio::test]
async fn a_json_pick_from_the_command_is_signed_and_sent() {
    let policy = Policy::Exec(r#"echo '{"decision":"accept","number":45}'; exit 1"#.into());
    let (state, reason, number) = decide_push(policy, &CHOICES).await;
    assert_eq!((state, reason.as_str()), (TransactionState::Accepted, ""));
    assert_eq!(number, 45);
}

#[tokio::test]
async fn a_command_that_prints_no_number_is_denied_by_policy() {
    let (state, reason, number) = decide_push(Policy::Exec("true".into()), &CHOICES).await;
    assert_eq!(
        (state, reason.as_str(), number),
        (TransactionState::Denied, "policy", 0)
    );
}

#[tokio::test]
async fn the_accept_policy_denies_when_a_number_must_be_picked() {
    let (state, reason, number) = decide_push(Policy::Accept, &CHOICES).await;
    assert_eq!(
        (state, reason.as_str(), number),
        (TransactionState::Denied, "policy", 0)
    );
}

/// An exec policy whose leader waits on a grandchild; both pids go to `file`.
fn long_running(file: &std::path::Path) -> Policy {
    Policy::Exec(format!(
        "sleep 30 & echo $$ $! > '{}'; wait",
        file.display()
    ))
}

/// Asserts every pid in `pids` is gone within 1 s of `cancelled_at`; yields
/// meanwhile, since the daemon shares the test's runtime.
async fn assert_gone_quickly(pids: &str, cancelled_at: Instant) {
    for pid in pids.split_whitespace() {
        while !is_gone(pid) && cancelled_at.elapsed() < Duration::from_secs(1) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            is_gone(pid),
            "process {pid} still runs after a cancellation"
        );
    }
}

#[tokio::test]
async fn a_cancellation_kills_the_policy_command_and_reports_cancelled() {
    let fake = Fake::default();
    let dir = tempfile::tempdir().unwrap();
    let pids_file = dir.path().join("pids");
    let agent = Agent::start(&fake, None, long_running(&pids_file)).await;
    let (otp, id) = fake.new_otp();
    let state = agent.state();
    let caller = tokio::spawn(async move {
        assent_agent::submit_otp(&state, &otp, Duration::from_secs(20)).await
    });
    let pids = wait_for_line(&pids_file).await;
    let cancelled_at = Instant::now();
    fake.cancel(&id, "cancelled").await;
    let outcome = caller.await.unwrap().unwrap();
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(1),
        "{:?}",
        cancelled_at.elapsed()
    );
    assert_eq!(outcome.state.as_deref(), Some("CANCELLED"));
    assert_eq!(outcome.reason.as_deref(), Some("cancelled"));
    assert_gone_quickly(&pids, cancelled_at).await;
    assert_eq!(fake.0.lock().unwrap().decisions_received, 0);
    agent.stop().await;
}

#[tokio::test]
async fn a_push_answered_elsewhere_stops_its_policy_without_deciding() {
    let fake = Fake::default();
    let dir = tempfile::tempdir().unwrap();
    let pids_file = dir.path().join("pids");
    let agent = Agent::start(&fake, None, long_running(&pids_file)).await;
    fake.wait_connected().await;
    let id = fake.push_live(&CHOICES).await;
    let pids = wait_for_line(&pids_file).await;
    let cancelled_at = Instant::now();
    fake.cancel(&id, "answered_elsewhere").await;
    assert_gone_quickly(&pids, cancelled_at).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.0.lock().unwrap().decisions_received, 0);
    agent.stop().await;
}

#[tokio::test]
async fn a_cancellation_drops_a_decision_not_yet_acknowledged() {
    let fake = Fake::default().with(|world| world.cancel_next_decision = Some("expired".into()));
    let agent = Agent::start(&fake, None, Policy::Accept).await;
    let (otp, _) = fake.new_otp();
    // The fake answers the decision with a Cancellation, then drops the stream.
    let outcome = agent.otp(&otp).await;
    assert_eq!(outcome.state.as_deref(), Some("CANCELLED"));
    assert_eq!(outcome.reason.as_deref(), Some("expired"));
    fake.wait_until("the device reconnected", |world| world.connects >= 2)
        .await;
    fake.wait_connected().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fake.0.lock().unwrap().decisions_received,
        1,
        "the dropped decision is not re-sent"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_push_resent_while_its_policy_runs_is_decided_once() {
    let fake = Fake::default();
    let runs = tempfile::NamedTempFile::new().unwrap();
    let command = format!("echo run >> '{}'; sleep 2", runs.path().display());
    let agent = Agent::start(&fake, None, Policy::Exec(command)).await;
    fake.wait_connected().await;
    let id = fake.push_live(&[]).await;
    wait_for_line(runs.path()).await;
    // A duplicate on the same stream, then the copy sent after a reconnect.
    fake.resend(&id).await;
    fake.kick();
    fake.wait_until("the device reconnected", |world| world.connects >= 2)
        .await;
    let (state, _) = fake.wait_for_outcome(&id).await;
    assert_eq!(state, TransactionState::Accepted);
    // A late copy of an ended push does not run the policy again either.
    fake.wait_connected().await;
    fake.resend(&id).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let runs = std::fs::read_to_string(runs.path()).unwrap();
    assert_eq!(runs.lines().count(), 1, "the policy ran once");
    assert_eq!(fake.0.lock().unwrap().decisions_received, 1);
    agent.stop().await;
}
