//! The CIBA part of the storage contract, on both engines: requests by the
//! hash of their id, the poll guard, single redemption, and the ping/push
//! notification queue — claimed only once the transaction has ended, by one
//! owner at a time, taken over when a lease runs out, retried when due,
//! and the kept `auth_req_id` cleared once delivered or given up.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use assent_server::domain::transaction::NewPushTransaction;
use assent_server::domain::{ApplicationId, Context, Message, Transaction, TransactionId, UserId};
use assent_server::store::{CibaRequest, NotifyFailure, Store};
use assent_tests::TestDb;
use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

async fn create_app(store: &dyn Store, name: &str) -> ApplicationId {
    let created = assent_server::admin::create_application(store, name).await;
    created.unwrap().0.id
}

/// An open push to `user`, stored.
async fn open_push(
    store: &dyn Store,
    app: ApplicationId,
    user: &str,
    at: DateTime<Utc>,
) -> Transaction {
    let new = NewPushTransaction {
        id: TransactionId::random(),
        application_id: app,
        user_id: UserId::parse(user).unwrap(),
        message: Message::parse("Sign in").unwrap(),
        context: Context::parse(Default::default()).unwrap(),
        nonce: [5; 32],
        number_match: None,
        ttl: Duration::from_secs(60),
        binding: None,
    };
    let change = Transaction::create_push(new, at);
    assert!(store.apply(&change).await.unwrap());
    change.after
}

fn request(app: ApplicationId, t: &Transaction, hash: u8, at: DateTime<Utc>) -> CibaRequest {
    CibaRequest {
        id_hash: vec![hash; 32],
        application_id: app,
        transaction_id: t.id,
        notification_token: Some("token-0123456789abcdef".to_owned()),
        interval_seconds: 2,
        created_at: at,
        last_poll_at: None,
        redeemed_at: None,
        notified_at: None,
        notify_attempts: 0,
    }
}

async fn notification_is_claimed_once_the_transaction_ends_by_one_owner_at_a_time(db: TestDb) {
    let store = db.store().await;
    let app = create_app(store.as_ref(), "Shop").await;
    let at = Utc::now();
    let t = open_push(store.as_ref(), app, "alice", at).await;
    store
        .insert_ciba_request(&request(app, &t, 1, at), Some("the-auth-req-id"))
        .await
        .unwrap();
    // A poll client's request is never a notification.
    let polled = open_push(store.as_ref(), app, "bob", at).await;
    store
        .insert_ciba_request(&request(app, &polled, 2, at), None)
        .await
        .unwrap();
    let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
    let lease = at + TimeDelta::seconds(10);
    assert!(
        store
            .claim_ciba_notification(one, lease, at)
            .await
            .unwrap()
            .is_none(),
        "claimed while the transaction is open"
    );
    assert!(store.apply(&t.cancel(at).unwrap()).await.unwrap());
    assert!(store.apply(&polled.cancel(at).unwrap()).await.unwrap());
    let claimed = store
        .claim_ciba_notification(one, lease, at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.auth_req_id, "the-auth-req-id");
    assert_eq!(claimed.request.transaction_id, t.id);
    assert!(
        store
            .claim_ciba_notification(two, lease, at)
            .await
            .unwrap()
            .is_none(),
        "a live lease was taken"
    );
    // The lease runs out: another owner takes it, the first can no longer
    // record anything.
    let later = lease + TimeDelta::seconds(1);
    let taken = store
        .claim_ciba_notification(two, later + TimeDelta::seconds(10), later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.request.id_hash, vec![1; 32]);
    assert!(
        !store
            .ciba_notification_delivered(&[1; 32], one, later)
            .await
            .unwrap()
    );
    assert!(
        store
            .ciba_notification_delivered(&[1; 32], two, later)
            .await
            .unwrap()
    );
    let stored = store.ciba_request(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(
        stored.notified_at.map(|t| t.timestamp()),
        Some(later.timestamp())
    );
    assert_eq!(stored.notify_attempts, 1);
    // Delivered: never claimed again (the kept id is gone).
    let much_later = later + TimeDelta::hours(1);
    assert!(
        store
            .claim_ciba_notification(one, much_later, much_later)
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_failed_notification_waits_until_due_and_a_given_up_one_is_dropped(db: TestDb) {
    let store = db.store().await;
    let app = create_app(store.as_ref(), "Shop").await;
    let at = Utc::now();
    let t = open_push(store.as_ref(), app, "alice", at).await;
    store
        .insert_ciba_request(&request(app, &t, 3, at), Some("kept"))
        .await
        .unwrap();
    assert!(
        store
            .apply(&t.expire(at + TimeDelta::seconds(61)).unwrap())
            .await
            .unwrap()
    );
    let owner = Uuid::new_v4();
    let now = at + TimeDelta::seconds(62);
    let lease = now + TimeDelta::seconds(10);
    store
        .claim_ciba_notification(owner, lease, now)
        .await
        .unwrap()
        .unwrap();
    let retry_at = now + TimeDelta::seconds(2);
    let failed = NotifyFailure {
        next_attempt_at: retry_at,
        error: "HTTP 503".to_owned(),
        give_up: false,
    };
    assert!(
        store
            .ciba_notification_failed(&[3; 32], owner, &failed)
            .await
            .unwrap()
    );
    // The lease was given up, but the retry is not due yet.
    assert!(
        store
            .claim_ciba_notification(owner, lease, now)
            .await
            .unwrap()
            .is_none()
    );
    let again = store
        .claim_ciba_notification(owner, retry_at + TimeDelta::seconds(10), retry_at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.request.notify_attempts, 1);
    assert_eq!(again.auth_req_id, "kept");
    let given_up = NotifyFailure {
        give_up: true,
        ..failed
    };
    assert!(
        store
            .ciba_notification_failed(&[3; 32], owner, &given_up)
            .await
            .unwrap()
    );
    let far = retry_at + TimeDelta::hours(2);
    assert!(
        store
            .claim_ciba_notification(owner, far, far)
            .await
            .unwrap()
            .is_none()
    );
    let stored = store.ciba_request(&[3; 32]).await.unwrap().unwrap();
    assert_eq!(stored.notify_attempts, 2);
    assert!(stored.notified_at.is_none());
}

async fn polls_are_guarded_and_tokens_redeemed_once(db: TestDb) {
    let store = db.store().await;
    let app = create_app(store.as_ref(), "Shop").await;
    let at = Utc::now();
    let t = open_push(store.as_ref(), app, "alice", at).await;
    store
        .insert_ciba_request(&request(app, &t, 4, at), None)
        .await
        .unwrap();
    let interval = TimeDelta::seconds(2);
    assert!(
        store
            .poll_ciba_request(&[4; 32], at, at - interval)
            .await
            .unwrap()
    );
    let soon = at + TimeDelta::seconds(1);
    assert!(
        !store
            .poll_ciba_request(&[4; 32], soon, soon - interval)
            .await
            .unwrap()
    );
    let later = at + TimeDelta::seconds(3);
    assert!(
        store
            .poll_ciba_request(&[4; 32], later, later - interval)
            .await
            .unwrap()
    );
    assert!(store.redeem_ciba_request(&[4; 32], later).await.unwrap());
    assert!(!store.redeem_ciba_request(&[4; 32], later).await.unwrap());
    assert!(store.ciba_request(&[9; 32]).await.unwrap().is_none());
}

assent_tests::on_both_engines!(
    notification_is_claimed_once_the_transaction_ends_by_one_owner_at_a_time,
    a_failed_notification_waits_until_due_and_a_given_up_one_is_dropped,
    polls_are_guarded_and_tokens_redeemed_once,
);
