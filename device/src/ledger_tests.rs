//! Unit tests of [`super::Ledger`]: the reconnect and duplicate rules.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::sync::oneshot::error::TryRecvError;

use super::*;

const TX: &str = "6f1c2c5e-3a4b-4c5d-8e9f-0a1b2c3d4e5f";

fn otp(transaction_id: &str) -> Otp {
    let mut bytes = uuid::Uuid::parse_str(transaction_id)
        .unwrap()
        .as_bytes()
        .to_vec();
    bytes.extend([0x5a; 32]);
    Otp::parse(&STANDARD.encode(bytes)).unwrap()
}

fn waiting(ledger: &mut Ledger, transaction_id: &str) -> oneshot::Receiver<OtpOutcome> {
    let (reply, outcome) = oneshot::channel();
    ledger.enqueue(otp(transaction_id), reply);
    outcome
}

fn confirmation(request_id: u64, transaction_id: &str) -> ConfirmationRequest {
    ConfirmationRequest {
        request_id,
        transaction_id: transaction_id.to_owned(),
        nonce: vec![1; 32],
        ..Default::default()
    }
}

fn decision(transaction_id: &str) -> SignedDecision {
    SignedDecision {
        transaction_id: transaction_id.to_owned(),
        decision: 1,
        reason: String::new(),
        signature: vec![9; 64],
        number: 0,
    }
}

fn result(transaction_id: &str, state: TransactionState, applied: bool) -> DecisionResult {
    DecisionResult {
        transaction_id: transaction_id.to_owned(),
        state: state.into(),
        reason: String::new(),
        applied,
    }
}

#[test]
fn submissions_get_unique_nonzero_request_ids_once() {
    let mut ledger = Ledger::default();
    let _first = waiting(&mut ledger, TX);
    let _second = waiting(&mut ledger, "00000000-0000-4000-8000-000000000001");
    let sent = ledger.take_submissions();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|s| s.request_id != 0));
    assert_ne!(sent[0].request_id, sent[1].request_id);
    assert_eq!(sent[0].otp, otp(TX).as_str());
    assert!(ledger.take_submissions().is_empty(), "sent once per stream");
}

#[test]
fn an_accepted_decision_reaches_the_caller() {
    let mut ledger = Ledger::default();
    let mut outcome = waiting(&mut ledger, TX);
    let id = ledger.take_submissions()[0].request_id;
    assert!(ledger.on_confirmation(&confirmation(id, TX)).is_some());
    assert!(ledger.deciding(TX).is_some());
    ledger.on_decided(decision(TX));
    assert_eq!(ledger.unacknowledged().len(), 1);
    assert_eq!(outcome.try_recv(), Err(TryRecvError::Empty));
    ledger.on_decision_result(&result(TX, TransactionState::Accepted, true));
    let outcome = outcome.try_recv().unwrap();
    assert!(outcome.ok);
    assert_eq!(outcome.state.as_deref(), Some("ACCEPTED"));
    assert_eq!(outcome.transaction_id.as_deref(), Some(TX));
    assert!(ledger.unacknowledged().is_empty());
}

#[test]
fn an_unknown_otp_is_reported_without_an_oracle() {
    let mut ledger = Ledger::default();
    let mut outcome = waiting(&mut ledger, TX);
    let id = ledger.take_submissions()[0].request_id;
    ledger.on_rejection(&Rejection {
        request_id: id,
        code: 5,
        ..Default::default()
    });
    let outcome = outcome.try_recv().unwrap();
    assert!(!outcome.ok);
    assert_eq!(outcome.state, None);
    assert_eq!(
        outcome.error.as_deref(),
        Some("invalid OTP (unknown, already used or expired)")
    );
}

#[test]
fn too_many_attempts_is_named() {
    assert!(otp_rejection_error(8, "wait 5 minutes").starts_with("too many attempts"));
    assert_eq!(otp_rejection_error(3, ""), "invalid OTP (malformed)");
}

#[test]
fn resubmission_after_reconnect_yields_to_the_resent_confirmation() {
    let mut ledger = Ledger::default();
    let mut outcome = waiting(&mut ledger, TX);
    ledger.take_submissions();
    // The stream broke before the confirmation request arrived.
    ledger.on_disconnect();
    let resubmitted = ledger.take_submissions();
    assert_eq!(resubmitted.len(), 1);
    // The server re-sends the confirmation first (request id 0)…
    assert!(ledger.on_confirmation(&confirmation(0, TX)).is_some());
    // …then refuses the resubmitted OTP as already used: ignored.
    ledger.on_rejection(&Rejection {
        request_id: resubmitted[0].request_id,
        code: 5,
        ..Default::default()
    });
    assert_eq!(outcome.try_recv(), Err(TryRecvError::Empty));
    ledger.on_decided(decision(TX));
    ledger.on_decision_result(&result(TX, TransactionState::Denied, true));
    assert_eq!(outcome.try_recv().unwrap().state.as_deref(), Some("DENIED"));
}

#[test]
fn a_resent_confirmation_does_not_run_the_policy_twice() {
    let mut ledger = Ledger::default();
    assert!(ledger.on_confirmation(&confirmation(0, TX)).is_some());
    ledger.on_disconnect();
    assert!(
        ledger.on_confirmation(&confirmation(0, TX)).is_none(),
        "policy still running"
    );
    ledger.on_decided(decision(TX));
    ledger.on_disconnect();
    assert_eq!(
        ledger.unacknowledged(),
        vec![decision(TX)],
        "re-sent after reconnect"
    );
    assert!(
        ledger.on_confirmation(&confirmation(0, TX)).is_none(),
        "decision unacknowledged"
    );
}

#[test]
fn a_late_result_reports_the_terminal_state() {
    let mut ledger = Ledger::default();
    let mut outcome = waiting(&mut ledger, TX);
    let id = ledger.take_submissions()[0].request_id;
    ledger.on_confirmation(&confirmation(id, TX));
    ledger.on_decided(decision(TX));
    ledger.on_decision_result(&result(TX, TransactionState::Expired, false));
    let outcome = outcome.try_recv().unwrap();
    assert!(!outcome.ok);
    assert_eq!(outcome.state.as_deref(), Some("EXPIRED"));
}

#[test]
fn cancellation_stops_the_policy_and_tells_the_caller() {
    let mut ledger = Ledger::default();
    let mut outcome = waiting(&mut ledger, TX);
    let id = ledger.take_submissions()[0].request_id;
    let cancel = ledger.on_confirmation(&confirmation(id, TX)).unwrap();
    ledger.on_cancellation(&Cancellation {
        transaction_id: TX.to_owned(),
        reason: "cancelled".to_owned(),
    });
    assert!(cancel.is_cancelled());
    assert!(ledger.deciding(TX).is_none(), "a late verdict is dropped");
    let outcome = outcome.try_recv().unwrap();
    assert_eq!(outcome.state.as_deref(), Some("CANCELLED"));
    assert_eq!(outcome.reason.as_deref(), Some("cancelled"));
}

#[test]
fn a_rejected_decision_is_reported() {
    let mut ledger = Ledger::default();
    let mut outcome = waiting(&mut ledger, TX);
    let id = ledger.take_submissions()[0].request_id;
    ledger.on_confirmation(&confirmation(id, TX));
    ledger.on_decided(decision(TX));
    ledger.on_rejection(&Rejection {
        transaction_id: TX.to_owned(),
        code: 16,
        message: "bad signature".to_owned(),
        ..Default::default()
    });
    let error = outcome.try_recv().unwrap().error.unwrap();
    assert!(error.contains("bad signature"), "{error}");
    assert!(ledger.unacknowledged().is_empty());
}

#[test]
fn a_decision_refused_for_now_is_kept_for_a_resend_and_its_caller_waits() {
    let mut ledger = Ledger::default();
    let mut outcome = waiting(&mut ledger, TX);
    let id = ledger.take_submissions()[0].request_id;
    ledger.on_confirmation(&confirmation(id, TX));
    ledger.on_decided(decision(TX));
    let unavailable = Rejection {
        transaction_id: TX.to_owned(),
        code: tonic::Code::Unavailable as i32,
        message: "the server's database is unavailable; retry shortly".to_owned(),
        ..Default::default()
    };
    assert!(ledger.keeps_for_resend(&unavailable));
    ledger.on_disconnect();
    assert_eq!(
        ledger.unacknowledged(),
        [decision(TX)],
        "re-sent on the new stream"
    );
    assert_eq!(outcome.try_recv(), Err(TryRecvError::Empty));
    // The re-send finds the decision committed behind the failure.
    ledger.on_decision_result(&result(TX, TransactionState::Accepted, false));
    assert!(outcome.try_recv().unwrap().ok);
    // A final refusal, or a transient one of no decision held, is not kept.
    let refused = Rejection {
        code: tonic::Code::PermissionDenied as i32,
        ..unavailable.clone()
    };
    assert!(!ledger.keeps_for_resend(&refused));
    assert!(
        !ledger.keeps_for_resend(&unavailable),
        "nothing held any more"
    );
}

#[test]
fn a_caller_that_hung_up_is_not_submitted() {
    let mut ledger = Ledger::default();
    drop(waiting(&mut ledger, TX));
    assert!(ledger.take_submissions().is_empty());
}

#[test]
fn failing_waiters_answers_everyone() {
    let mut ledger = Ledger::default();
    let mut queued = waiting(&mut ledger, TX);
    ledger.fail_waiters("device revoked");
    assert_eq!(
        queued.try_recv().unwrap().error.as_deref(),
        Some("device revoked")
    );
    assert!(ledger.take_submissions().is_empty());
}

#[test]
fn a_push_without_a_caller_is_decided_and_acknowledged_like_an_otp() {
    let mut ledger = Ledger::default();
    assert!(ledger.on_confirmation(&confirmation(0, TX)).is_some());
    assert!(ledger.deciding(TX).is_some());
    ledger.on_decided(decision(TX));
    assert_eq!(ledger.unacknowledged(), vec![decision(TX)]);
    let callers = ledger.on_decision_result(&result(TX, TransactionState::Accepted, true));
    assert_eq!(callers, 0, "nobody waits for a push");
    assert!(ledger.unacknowledged().is_empty());
}

#[test]
fn a_cancellation_drops_the_unacknowledged_decision() {
    let mut ledger = Ledger::default();
    let mut outcome = waiting(&mut ledger, TX);
    let id = ledger.take_submissions()[0].request_id;
    ledger.on_confirmation(&confirmation(id, TX));
    ledger.on_decided(decision(TX));
    ledger.on_disconnect();
    let callers = ledger.on_cancellation(&Cancellation {
        transaction_id: TX.to_owned(),
        reason: "expired".to_owned(),
    });
    assert_eq!(callers, 1);
    assert!(ledger.unacknowledged().is_empty(), "never re-sent");
    let outcome = outcome.try_recv().unwrap();
    assert_eq!(outcome.state.as_deref(), Some("CANCELLED"));
    assert_eq!(outcome.reason.as_deref(), Some("expired"));
}

#[test]
fn a_late_copy_of_an_ended_transaction_runs_no_policy() {
    let mut ledger = Ledger::default();
    ledger.on_confirmation(&confirmation(0, TX));
    ledger.on_decided(decision(TX));
    ledger.on_decision_result(&result(TX, TransactionState::Accepted, true));
    assert!(ledger.on_confirmation(&confirmation(0, TX)).is_none());
    let other = "00000000-0000-4000-8000-000000000002";
    ledger.on_confirmation(&confirmation(0, other));
    ledger.on_cancellation(&Cancellation {
        transaction_id: other.to_owned(),
        reason: "answered_elsewhere".to_owned(),
    });
    assert!(ledger.on_confirmation(&confirmation(0, other)).is_none());
    assert!(ledger.deciding(other).is_none());
}

#[test]
fn a_rejected_decision_may_be_decided_again_when_asked_again() {
    let mut ledger = Ledger::default();
    ledger.on_confirmation(&confirmation(0, TX));
    ledger.on_decided(decision(TX));
    ledger.on_rejection(&Rejection {
        transaction_id: TX.to_owned(),
        code: 13,
        ..Default::default()
    });
    assert!(ledger.on_confirmation(&confirmation(0, TX)).is_some());
}

#[test]
fn only_the_latest_endings_are_remembered() {
    let mut ledger = Ledger::default();
    for n in 0..=REMEMBERED_ENDINGS {
        ledger.on_cancellation(&Cancellation {
            transaction_id: format!("tx-{n}"),
            reason: "expired".to_owned(),
        });
    }
    assert_eq!(ledger.ended.len(), REMEMBERED_ENDINGS);
    assert!(ledger.on_confirmation(&confirmation(0, "tx-0")).is_some());
    assert!(ledger.on_confirmation(&confirmation(0, "tx-1")).is_none());
}
