//! The notifier's delivery rules.

use chrono::Utc;

use super::*;
use crate::domain::transaction::{Audience, WithdrawReason};
use crate::domain::{ApplicationId, Device, DeviceId, Notice, TransactionId, UserId};

fn device(app: ApplicationId, user: &str) -> Device {
    Device {
        id: DeviceId::random(),
        application_id: app,
        application_name: "Shop".to_owned(),
        user_id: UserId::parse(user).unwrap_or_else(|_| unreachable!()),
        name: "phone".to_owned(),
        public_key: [1; 32],
        created_at: Utc::now(),
        last_seen_at: None,
        revoked_at: None,
    }
}

fn withdraw(audience: Audience) -> Notice {
    Notice::Withdraw {
        audience,
        transaction_id: TransactionId::random(),
        reason: WithdrawReason::Cancelled,
    }
}

#[tokio::test]
async fn a_withdrawal_reaches_every_session_of_the_user_but_the_answering_device() {
    let notifier = Notifier::new();
    let app = ApplicationId::random();
    let (phone, laptop, other) = (
        device(app, "alice"),
        device(app, "alice"),
        device(app, "bob"),
    );
    let mut phone_session = notifier.register_device(&phone, chrono::Utc::now());
    let mut laptop_session = notifier.register_device(&laptop, chrono::Utc::now());
    let mut other_session = notifier.register_device(&other, chrono::Utc::now());
    let notice = withdraw(Audience::User {
        application_id: app,
        user_id: phone.user_id.clone(),
        except: Some(phone.id),
    });
    notifier.publish(notice.clone());
    let received = laptop_session.recv().await.map(|d| d.notice);
    assert_eq!(received, Some(notice));
    assert!(phone_session.receiver.try_recv().is_err());
    assert!(other_session.receiver.try_recv().is_err());
}

#[tokio::test]
async fn revocation_ends_the_sessions_even_when_their_inbox_is_full() {
    let notifier = Notifier::new();
    let phone = device(ApplicationId::random(), "alice");
    let mut session = notifier.register_device(&phone, chrono::Utc::now());
    for _ in 0..SESSION_INBOX {
        notifier.publish(withdraw(Audience::Device {
            device_id: phone.id,
        }));
    }
    assert_eq!(
        session.end_reason(),
        None,
        "a full inbox is not yet an overflow"
    );
    notifier.publish(Notice::Revoked {
        device_id: phone.id,
    });
    assert_eq!(session.end_reason(), Some(SessionEnd::Revoked));
    assert_eq!(
        session.recv().await,
        None,
        "nothing queued is acted on any more"
    );
}

#[tokio::test]
async fn a_session_that_cannot_take_a_notice_is_ended_not_skipped() {
    let notifier = Notifier::new();
    let phone = device(ApplicationId::random(), "alice");
    let mut session = notifier.register_device(&phone, chrono::Utc::now());
    for _ in 0..=SESSION_INBOX {
        notifier.publish(withdraw(Audience::Device {
            device_id: phone.id,
        }));
    }
    assert_eq!(session.end_reason(), Some(SessionEnd::FellBehind));
    assert!(session.end_token().is_cancelled());
    assert_eq!(session.recv().await, None);
}

#[tokio::test]
async fn dropping_the_registration_disconnects() {
    let notifier = Notifier::new();
    let phone = device(ApplicationId::random(), "alice");
    let first = notifier.register_device(&phone, chrono::Utc::now());
    let second = notifier.register_device(&phone, chrono::Utc::now());
    assert!(notifier.is_connected(phone.id));
    drop(first);
    assert!(notifier.is_connected(phone.id), "one session is still live");
    drop(second);
    assert!(!notifier.is_connected(phone.id));
    assert_eq!(notifier.session_count(), 0);
}

#[tokio::test]
async fn notices_are_relayed_but_remote_ones_are_not_relayed_again() {
    let (notifier, mut relay) = Notifier::with_relay(None);
    let phone = device(ApplicationId::random(), "alice");
    let revoked = Notice::Revoked {
        device_id: phone.id,
    };
    notifier.publish(revoked.clone());
    assert_eq!(relay.recv().await, Some(revoked.clone()));
    notifier.deliver_remote(&revoked, None);
    assert!(relay.try_recv().is_err());
}

#[tokio::test]
async fn a_wake_up_after_marking_seen_is_not_lost() {
    let notifier = Notifier::new();
    let app = ApplicationId::random();
    let mut watcher = notifier.watch_events(app);
    watcher.borrow_and_update();
    notifier.publish(Notice::EventsAppended {
        application_id: app,
    });
    assert!(watcher.has_changed().unwrap_or(false));
}

#[tokio::test]
async fn a_newer_stream_replaces_an_older_one_but_a_late_notice_ends_nothing_newer() {
    let notifier = Notifier::new();
    let phone = device(ApplicationId::random(), "alice");
    let older = notifier.register_device(&phone, chrono::Utc::now());
    let newer = notifier.register_device(&phone, chrono::Utc::now());
    assert_eq!(older.end_reason(), Some(SessionEnd::Replaced));
    assert_eq!(newer.end_reason(), None);
    // A notice from another replica about a stream opened before this one.
    notifier.deliver_remote(
        &Notice::StreamOpened {
            device_id: phone.id,
            stream: uuid::Uuid::new_v4(),
            opened_at: Utc::now() - chrono::TimeDelta::seconds(1),
        },
        None,
    );
    assert_eq!(newer.end_reason(), None, "a late notice ends nothing newer");
}

#[tokio::test]
async fn a_settled_notice_wakes_only_the_waiters_of_its_transaction() {
    let notifier = Notifier::new();
    let app = ApplicationId::from_uuid(uuid::Uuid::nil());
    let (id, other) = (TransactionId::random(), TransactionId::random());
    let mut waiting = notifier.watch_outcome(id);
    let mut elsewhere = notifier.watch_outcome(other);
    waiting.mark_seen();
    elsewhere.mark_seen();
    notifier.deliver_remote(
        &Notice::Settled {
            application_id: app,
            transaction_id: id,
        },
        None,
    );
    let woken = tokio::time::timeout(std::time::Duration::from_secs(1), waiting.changed()).await;
    assert!(matches!(woken, Ok(Ok(()))));
    let quiet =
        tokio::time::timeout(std::time::Duration::from_millis(50), elsewhere.changed()).await;
    assert!(quiet.is_err(), "another transaction's waiter stays asleep");
}

#[test]
fn the_last_outcome_watch_frees_its_entry_when_dropped() {
    let notifier = Notifier::new();
    let id = TransactionId::random();
    let first = notifier.watch_outcome(id);
    let second = notifier.watch_outcome(id);
    drop(first);
    assert_eq!(notifier.outcomes.lock().map(|o| o.len()).unwrap_or(0), 1);
    drop(second);
    assert_eq!(notifier.outcomes.lock().map(|o| o.len()).unwrap_or(9), 0);
}
