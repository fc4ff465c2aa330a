//! The aggregate's rules, one test per row of the state table and per refusal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use assent_proto::signing::SignedVerdict;
use chrono::{DateTime, TimeDelta, Utc};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::domain::device::Device;
use crate::domain::push::NumberMatch;
use crate::domain::{
    ApplicationId, Context, DenyReason, DeviceId, Message, Otp, TransactionId, UserId,
};

pub(crate) fn device(user: &str) -> Device {
    Device {
        id: DeviceId::random(),
        application_id: ApplicationId::from_uuid(uuid::Uuid::nil()),
        application_name: "Example Shop".to_owned(),
        user_id: UserId::parse(user).unwrap(),
        name: "phone".to_owned(),
        public_key: [7; 32],
        created_at: Utc::now(),
        last_seen_at: None,
        revoked_at: None,
    }
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

/// A pending OTP transaction of `app`, optionally restricted to `user`.
fn otp_transaction(user: Option<&str>, now: DateTime<Utc>) -> (Transaction, Otp) {
    let otp = Otp::generate(&mut rng(), TransactionId::random());
    let change = Transaction::create_otp(
        NewOtpTransaction {
            id: otp.id(),
            application_id: ApplicationId::from_uuid(uuid::Uuid::nil()),
            user_id: user.map(|u| UserId::parse(u).unwrap()),
            message: Message::parse("Log in?").unwrap(),
            context: Context::parse(BTreeMap::new()).unwrap(),
            otp_hash: otp.hash(),
            ttl: Duration::from_secs(120),
            binding: None,
        },
        now,
    );
    (change.after, otp)
}

fn push_transaction(user: &str, numbers: bool, now: DateTime<Utc>) -> Transaction {
    Transaction::create_push(
        NewPushTransaction {
            id: TransactionId::random(),
            application_id: ApplicationId::from_uuid(uuid::Uuid::nil()),
            user_id: UserId::parse(user).unwrap(),
            message: Message::parse("Log in?").unwrap(),
            context: Context::parse(BTreeMap::new()).unwrap(),
            nonce: [3; 32],
            number_match: numbers.then_some(NumberMatch {
                number: 45,
                choices: [12, 45, 78],
            }),
            ttl: Duration::from_secs(120),
            binding: None,
        },
        now,
    )
    .after
}

pub(crate) fn scanned_otp(device: &Device, now: DateTime<Utc>) -> Transaction {
    let (pending, otp) = otp_transaction(None, now);
    pending.scan(device, &otp, [9; 32], now).unwrap().after
}

fn accept() -> Decision {
    Decision {
        verdict: SignedVerdict::Accept,
        reason: None,
        number: None,
        signature: [1; 64],
    }
}

fn deny(reason: Option<DenyReason>) -> Decision {
    Decision {
        verdict: SignedVerdict::Deny,
        reason,
        number: None,
        signature: [1; 64],
    }
}

fn valid(_: &[u8]) -> bool {
    true
}

#[test]
fn creating_an_otp_login_inserts_a_pending_transaction_and_its_event() {
    let now = Utc::now();
    let (created, _) = otp_transaction(Some("alice"), now);
    assert_eq!(created.state, TransactionState::Pending);
    assert_eq!(created.version, 1);
    assert_eq!(created.expires_at, now + TimeDelta::seconds(120));
    assert!(created.otp_hash.is_some());
}

#[test]
fn creating_a_push_asks_every_device_of_the_user() {
    let now = Utc::now();
    let change = Transaction::create_push(
        NewPushTransaction {
            id: TransactionId::random(),
            application_id: ApplicationId::random(),
            user_id: UserId::parse("alice").unwrap(),
            message: Message::parse("Log in?").unwrap(),
            context: Context::default(),
            nonce: [3; 32],
            number_match: None,
            ttl: Duration::from_secs(60),
            binding: None,
        },
        now,
    );
    assert_eq!(change.expected, None);
    assert_eq!(change.event.event_type, EventType::TransactionCreated);
    assert!(matches!(
        told(&change).as_slice(),
        [Notice::Confirm { transaction_id, .. }] if *transaction_id == change.after.id
    ));
}

#[test]
fn pending_to_scanned_binds_the_device_user_and_nonce_and_drops_the_otp_hash() {
    let now = Utc::now();
    let phone = device("alice");
    let (pending, otp) = otp_transaction(None, now);
    let change = pending.scan(&phone, &otp, [9; 32], now).unwrap();
    assert_eq!(change.expected, Some(1));
    assert_eq!(change.after.state, TransactionState::Scanned);
    assert_eq!(change.after.version, 2);
    assert_eq!(change.after.device_id, Some(phone.id));
    assert_eq!(change.after.user_id, Some(phone.user_id.clone()));
    assert_eq!(change.after.nonce, Some([9; 32]));
    assert_eq!(change.after.otp_hash, None);
    assert_eq!(change.event.event_type, EventType::TransactionScanned);
    assert_eq!(change.guard.device_unrevoked, Some(phone.id));
    assert_eq!(change.guard.unexpired_at, Some(now));
}

#[test]
fn every_reason_to_refuse_a_scan_is_the_same_refusal() {
    let now = Utc::now();
    let phone = device("alice");
    let (restricted, otp) = otp_transaction(Some("bob"), now);
    assert_eq!(
        restricted.scan(&phone, &otp, [0; 32], now),
        Err(Refusal::OtpRefused),
        "restricted to another user"
    );
    let (pending, otp) = otp_transaction(None, now);
    let wrong = Otp::generate(&mut StdRng::seed_from_u64(99), pending.id);
    assert_eq!(
        pending.scan(&phone, &wrong, [0; 32], now),
        Err(Refusal::OtpRefused),
        "wrong secret"
    );
    let later = now + TimeDelta::seconds(121);
    assert_eq!(
        pending.scan(&phone, &otp, [0; 32], later),
        Err(Refusal::OtpRefused),
        "expired"
    );
    let mut foreign = device("alice");
    foreign.application_id = ApplicationId::random();
    assert_eq!(
        pending.scan(&foreign, &otp, [0; 32], now),
        Err(Refusal::OtpRefused),
        "another application"
    );
    let mut revoked = device("alice");
    revoked.revoked_at = Some(now);
    assert_eq!(
        pending.scan(&revoked, &otp, [0; 32], now),
        Err(Refusal::OtpRefused),
        "revoked device"
    );
    let scanned = pending.scan(&phone, &otp, [0; 32], now).unwrap().after;
    assert_eq!(
        scanned.scan(&phone, &otp, [0; 32], now),
        Err(Refusal::OtpRefused),
        "used"
    );
}

#[test]
fn scanned_to_accepted_by_the_scanning_device() {
    let now = Utc::now();
    let phone = device("alice");
    let scanned = scanned_otp(&phone, now);
    let change = scanned.decide(&phone, &accept(), valid, now).unwrap();
    assert_eq!(change.after.state, TransactionState::Accepted);
    assert_eq!(change.after.completed_at, Some(now));
    assert_eq!(change.after.decision_signature, Some(vec![1; 64]));
    assert_eq!(change.event.event_type, EventType::TransactionAccepted);
    assert!(!change.event.fraud_reported);
    assert_eq!(change.guard.device_unrevoked, Some(phone.id));
    assert!(told(&change).is_empty(), "the decider needs no withdrawal");
}

#[test]
fn scanned_to_denied_keeps_the_reason_and_flags_not_me_as_fraud() {
    let now = Utc::now();
    let phone = device("alice");
    let scanned = scanned_otp(&phone, now);
    let change = scanned
        .decide(&phone, &deny(Some(DenyReason::NotMe)), valid, now)
        .unwrap();
    assert_eq!(change.after.state, TransactionState::Denied);
    assert_eq!(change.after.reason, Some(Reason::NotMe));
    assert!(change.event.fraud_reported);
    let policy = scanned
        .decide(&phone, &deny(Some(DenyReason::Policy)), valid, now)
        .unwrap();
    assert!(!policy.event.fraud_reported);
}

#[test]
fn only_the_scanning_device_may_decide_an_otp_transaction() {
    let now = Utc::now();
    let phone = device("alice");
    let other = device("alice");
    let scanned = scanned_otp(&phone, now);
    assert_eq!(
        scanned.decide(&other, &accept(), valid, now),
        Err(Refusal::NotHeld)
    );
    let (pending, _) = otp_transaction(None, now);
    assert_eq!(
        pending.decide(&phone, &accept(), valid, now),
        Err(Refusal::NotHeld),
        "an OTP transaction is decided only after its scan"
    );
}

#[test]
fn a_revoked_device_cannot_decide() {
    let now = Utc::now();
    let mut phone = device("alice");
    let scanned = scanned_otp(&phone, now);
    phone.revoked_at = Some(now);
    assert_eq!(
        scanned.decide(&phone, &accept(), valid, now),
        Err(Refusal::NotHeld)
    );
    let push = push_transaction("alice", false, now);
    assert_eq!(
        push.decide(&phone, &accept(), valid, now),
        Err(Refusal::NotHeld)
    );
}

#[test]
fn a_bad_signature_is_refused() {
    let now = Utc::now();
    let phone = device("alice");
    let scanned = scanned_otp(&phone, now);
    assert_eq!(
        scanned.decide(&phone, &accept(), |_| false, now),
        Err(Refusal::BadSignature)
    );
}

#[test]
fn a_decision_on_an_ended_transaction_learns_the_outcome() {
    let now = Utc::now();
    let phone = device("alice");
    let scanned = scanned_otp(&phone, now);
    let accepted = scanned.decide(&phone, &accept(), valid, now).unwrap().after;
    assert_eq!(
        accepted.decide(&phone, &accept(), valid, now),
        Err(Refusal::Ended(TransactionState::Accepted))
    );
    let later = now + TimeDelta::seconds(121);
    assert_eq!(
        scanned.decide(&phone, &accept(), valid, later),
        Err(Refusal::Ended(TransactionState::Expired)),
        "an overdue transaction is expired even before the sweeper ran"
    );
}

#[test]
fn push_pending_to_accepted_binds_the_answering_device_and_withdraws_from_the_others() {
    let now = Utc::now();
    let phone = device("alice");
    let push = push_transaction("alice", false, now);
    let change = push.decide(&phone, &accept(), valid, now).unwrap();
    assert_eq!(change.expected, Some(1));
    assert_eq!(change.after.state, TransactionState::Accepted);
    assert_eq!(change.after.device_id, Some(phone.id));
    assert_eq!(
        told(&change),
        vec![Notice::Withdraw {
            audience: Audience::User {
                application_id: push.application_id,
                user_id: phone.user_id.clone(),
                except: Some(phone.id),
            },
            transaction_id: push.id,
            reason: WithdrawReason::AnsweredElsewhere,
        }]
    );
}

#[test]
fn a_push_is_answered_only_by_its_users_devices_and_only_once() {
    let now = Utc::now();
    let push = push_transaction("alice", false, now);
    assert_eq!(
        push.decide(&device("bob"), &accept(), valid, now),
        Err(Refusal::NotHeld)
    );
    let winner = device("alice");
    let won = push.decide(&winner, &accept(), valid, now).unwrap().after;
    assert_eq!(
        won.decide(&device("alice"), &accept(), valid, now),
        Err(Refusal::NotHeld),
        "the loser holds nothing any more"
    );
    assert_eq!(
        won.decide(&winner, &accept(), valid, now),
        Err(Refusal::Ended(TransactionState::Accepted))
    );
}

#[test]
fn number_matching_needs_the_shown_number_and_a_wrong_pick_denies() {
    let now = Utc::now();
    let phone = device("alice");
    let push = push_transaction("alice", true, now);
    assert!(matches!(
        push.decide(&phone, &accept(), valid, now),
        Err(Refusal::Input(error)) if error.field == "number"
    ));
    let mut wrong = accept();
    wrong.number = Some(12);
    let denied = push.decide(&phone, &wrong, valid, now).unwrap();
    assert_eq!(denied.after.state, TransactionState::Denied);
    assert_eq!(denied.after.reason, Some(Reason::WrongNumber));
    let mut right = accept();
    right.number = Some(45);
    let accepted = push.decide(&phone, &right, valid, now).unwrap();
    assert_eq!(accepted.after.state, TransactionState::Accepted);
    let plain = push_transaction("alice", false, now);
    assert!(matches!(
        plain.decide(&phone, &right, valid, now),
        Err(Refusal::Input(error)) if error.field == "number"
    ));
}

#[test]
fn an_accept_carries_no_reason() {
    let now = Utc::now();
    let phone = device("alice");
    let scanned = scanned_otp(&phone, now);
    let mut odd = accept();
    odd.reason = Some(DenyReason::Policy);
    assert!(matches!(
        scanned.decide(&phone, &odd, valid, now),
        Err(Refusal::Input(error)) if error.field == "reason"
    ));
}

#[test]
fn open_to_cancelled_withdraws_from_the_holder() {
    let now = Utc::now();
    let phone = device("alice");
    let (pending, _) = otp_transaction(None, now);
    let change = pending.cancel(now).unwrap();
    assert_eq!(change.after.state, TransactionState::Cancelled);
    assert!(told(&change).is_empty(), "nobody holds a pending OTP");
    let scanned = scanned_otp(&phone, now);
    let change = scanned.cancel(now).unwrap();
    assert_eq!(change.event.event_type, EventType::TransactionCancelled);
    assert_eq!(
        told(&change),
        vec![Notice::Withdraw {
            audience: Audience::Device {
                device_id: phone.id
            },
            transaction_id: scanned.id,
            reason: WithdrawReason::Cancelled,
        }]
    );
    let push = push_transaction("alice", false, now);
    let change = push.cancel(now).unwrap();
    assert!(matches!(
        told(&change).as_slice(),
        [Notice::Withdraw {
            audience: Audience::User { except: None, .. },
            ..
        }]
    ));
}

#[test]
fn an_ended_or_overdue_transaction_cannot_be_cancelled() {
    let now = Utc::now();
    let (pending, _) = otp_transaction(None, now);
    let cancelled = pending.cancel(now).unwrap().after;
    assert_eq!(
        cancelled.cancel(now),
        Err(Refusal::Ended(TransactionState::Cancelled))
    );
    assert_eq!(
        pending.cancel(now + TimeDelta::seconds(120)),
        Err(Refusal::Ended(TransactionState::Expired))
    );
}

#[test]
fn open_to_expired_only_once_overdue() {
    let now = Utc::now();
    let phone = device("alice");
    let scanned = scanned_otp(&phone, now);
    assert_eq!(scanned.expire(now), Err(Refusal::NotOverdue));
    let later = now + TimeDelta::seconds(120);
    let change = scanned.expire(later).unwrap();
    assert_eq!(change.after.state, TransactionState::Expired);
    assert_eq!(change.after.completed_at, Some(later));
    assert_eq!(change.event.event_type, EventType::TransactionExpired);
    assert!(matches!(
        told(&change).as_slice(),
        [Notice::Withdraw {
            reason: WithdrawReason::Expired,
            ..
        }]
    ));
    let expired = change.after;
    assert_eq!(
        expired.expire(later),
        Err(Refusal::Ended(TransactionState::Expired))
    );
}

#[test]
fn scanned_to_failed_when_the_holding_device_is_revoked() {
    let now = Utc::now();
    let phone = device("alice");
    let scanned = scanned_otp(&phone, now);
    let change = scanned.fail_for_revoked(phone.id, now).unwrap();
    assert_eq!(change.after.state, TransactionState::Failed);
    assert_eq!(change.event.reason, Some(Reason::DeviceRevoked));
    assert!(matches!(
        told(&change).as_slice(),
        [Notice::Withdraw {
            reason: WithdrawReason::DeviceRevoked,
            ..
        }]
    ));
    assert_eq!(
        scanned.fail_for_revoked(DeviceId::random(), now),
        Err(Refusal::NotHeld)
    );
}

#[test]
fn terminal_states_never_change() {
    let now = Utc::now();
    let phone = device("alice");
    let scanned = scanned_otp(&phone, now);
    let ended = [
        scanned.decide(&phone, &accept(), valid, now).unwrap().after,
        scanned
            .decide(&phone, &deny(None), valid, now)
            .unwrap()
            .after,
        scanned.cancel(now).unwrap().after,
        scanned.expire(now + TimeDelta::seconds(120)).unwrap().after,
        scanned.fail_for_revoked(phone.id, now).unwrap().after,
    ];
    for transaction in ended {
        assert!(transaction.state.is_terminal());
        assert!(transaction.cancel(now).is_err());
        assert!(transaction.expire(now + TimeDelta::days(1)).is_err());
        assert!(transaction.decide(&phone, &accept(), valid, now).is_err());
        assert!(transaction.fail_for_revoked(phone.id, now).is_err());
    }
}

#[test]
fn a_device_awaits_only_what_it_may_still_answer() {
    let now = Utc::now();
    let phone = device("alice");
    let scanned = scanned_otp(&phone, now);
    assert!(scanned.awaits_answer_from(&phone, now));
    assert!(!scanned.awaits_answer_from(&device("alice"), now));
    assert!(!scanned.awaits_answer_from(&phone, now + TimeDelta::seconds(120)));
    let push = push_transaction("alice", false, now);
    assert!(push.awaits_answer_from(&phone, now));
    assert!(!push.awaits_answer_from(&device("bob"), now));
}

/// What a change tells devices; checks on the way that it tells waiters
/// exactly when the transaction ends.
fn told(change: &Change) -> Vec<Notice> {
    let settled = Notice::Settled {
        application_id: change.after.application_id,
        transaction_id: change.after.id,
    };
    assert_eq!(
        change.notices.contains(&settled),
        change.after.state.is_terminal(),
        "a terminal change, and only one, tells whoever waits for the outcome"
    );
    change
        .notices
        .iter()
        .filter(|notice| **notice != settled)
        .cloned()
        .collect()
}
