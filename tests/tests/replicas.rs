//! Several servers on one PostgreSQL: what one replica does reaches devices
//! and subscribers connected to another (LISTEN/NOTIFY between replicas).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use assent_proto::signing::SignedVerdict;
use assent_proto::v1::server_message::Body;
use assent_proto::v1::{
    CancelTransactionRequest, CreatePushAuthenticationRequest, RevokeDeviceRequest,
    SubscribeRequest, TransactionState,
};
use assent_tests::{TestApp, TestDb, TestDevice, TestServer, rp_client, within};
use tonic::Code;

fn push_to(user: &str) -> CreatePushAuthenticationRequest {
    CreatePushAuthenticationRequest {
        user_id: user.to_owned(),
        message: "Log in to Example Shop?".to_owned(),
        ttl_seconds: 60,
        ..Default::default()
    }
}

/// Reads `events` until `transaction_id`'s event of `kind` (within 10 s).
async fn until_event(
    events: &mut tonic::Streaming<assent_proto::v1::Event>,
    transaction_id: &str,
    kind: &str,
    what: &str,
) {
    within(10, what, async {
        loop {
            let event = events.message().await.expect("stream").expect("open");
            if event.transaction_id == transaction_id && event.r#type == kind {
                return;
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_created_on_one_replica_reaches_a_device_on_another_and_back() {
    let db = TestDb::create().await;
    let replica_a = TestServer::start(&db).await;
    let replica_b = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let device = TestDevice::enroll(&replica_a, &app, "alice").await;
    let mut stream = device.connect(&replica_a).await.expect("connect to A");
    let mut rp_b = rp_client(&replica_b, &app.api_key).await;
    let mut events_b = rp_b
        .subscribe(SubscribeRequest {
            after_cursor: 0,
            ..Default::default()
        })
        .await
        .expect("subscribe on B")
        .into_inner();

    let created = rp_b
        .create_push_authentication(push_to("alice"))
        .await
        .expect("push on B")
        .into_inner();
    assert_eq!(
        created.devices_reached, 1,
        "the stream A holds counts on B too (shared presence)"
    );
    let Some(Body::ConfirmationRequest(request)) = stream.next().await.expect("stream") else {
        panic!("the device on A must receive the push created on B");
    };
    assert_eq!(request.transaction_id, created.transaction_id);
    let Body::DecisionResult(result) = stream
        .decide(device.decision(&request, SignedVerdict::Accept, ""))
        .await
    else {
        panic!("expected a decision result");
    };
    assert_eq!(result.state(), TransactionState::Accepted);
    until_event(
        &mut events_b,
        &created.transaction_id,
        "transaction.accepted",
        "B's subscriber to see the outcome decided on A",
    )
    .await;

    // A cancellation on B reaches the device on A.
    let second = rp_b
        .create_push_authentication(push_to("alice"))
        .await
        .expect("push on B")
        .into_inner();
    let Some(Body::ConfirmationRequest(_)) = stream.next().await.expect("stream") else {
        panic!("the second push must arrive too");
    };
    rp_b.cancel_transaction(CancelTransactionRequest {
        transaction_id: second.transaction_id.clone(),
    })
    .await
    .expect("cancel on B");
    let Some(Body::Cancellation(cancellation)) = stream.next().await.expect("stream") else {
        panic!("the cancellation on B must reach the device on A");
    };
    assert_eq!(cancellation.transaction_id, second.transaction_id);

    // Revoking on B closes the stream on A.
    rp_b.revoke_device(RevokeDeviceRequest {
        device_id: device.device_id.clone(),
    })
    .await
    .expect("revoke on B");
    let status = within(10, "the stream on A to close", async {
        loop {
            match stream.next().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream must end with an error status"),
                Err(status) => return status,
            }
        }
    })
    .await;
    assert_eq!(status.code(), Code::PermissionDenied);
}

/// Presence is shared: a device connected to A shows as connected on B, and
/// stops counting once its stream ends, or once its replica's lease ran out
/// (a replica that died without saying so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_the_same_on_every_replica() {
    use assent_proto::v1::{GetDeviceRequest, ListDevicesRequest};
    let db = TestDb::create().await;
    let replica_a = TestServer::start(&db).await;
    let replica_b = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let device = TestDevice::enroll(&replica_a, &app, "alice").await;
    let mut rp_a = rp_client(&replica_a, &app.api_key).await;
    let mut rp_b = rp_client(&replica_b, &app.api_key).await;
    let connected = |rp: &mut assent_tests::RpClient| {
        let mut rp = rp.clone();
        let id = device.device_id.clone();
        async move {
            rp.get_device(GetDeviceRequest { device_id: id })
                .await
                .unwrap()
                .into_inner()
                .device
                .unwrap()
                .connected
        }
    };
    assert!(!connected(&mut rp_b).await);
    let stream = device.connect(&replica_a).await.expect("connect to A");
    assert!(connected(&mut rp_a).await);
    assert!(connected(&mut rp_b).await, "B sees the stream A holds");
    let listed = rp_b
        .list_devices(ListDevicesRequest {
            user_id: "alice".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .devices;
    assert!(listed.iter().all(|d| d.connected));
    drop(stream);
    within(5, "the ended stream to stop counting on B", async {
        while connected(&mut rp_b).await {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;

    // A replica that died: its lease ended, its stream row is still there.
    let store = db.store().await;
    let dead = uuid::Uuid::new_v4();
    let device_id = assent_server::domain::DeviceId::parse(&device.device_id).unwrap();
    let now = chrono::Utc::now();
    store
        .renew_replica(dead, now + chrono::TimeDelta::milliseconds(300))
        .await
        .unwrap();
    store
        .stream_opened(uuid::Uuid::new_v4(), device_id, dead, now)
        .await
        .unwrap();
    assert!(connected(&mut rp_b).await, "counted while the lease runs");
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(!connected(&mut rp_b).await, "not once it ran out");
}

/// The per-key creation limit holds for the sum of the replicas: each allows
/// its share, so three replicas together allow the configured burst, not
/// three times it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_together_keep_one_creation_limit() {
    use assent_proto::v1::CreateOtpAuthenticationRequest;
    let db = TestDb::create().await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(
            TestServer::start_with(&db, |config| {
                config.create_burst = 30;
                config.create_rate_per_second = 0.001;
            })
            .await,
        );
    }
    let app = TestApp::create(&db, "Example Shop").await;
    let mut clients = Vec::new();
    for replica in &replicas {
        clients.push(rp_client(replica, &app.api_key).await);
    }
    let mut created = 0;
    for round in 0..40 {
        for rp in &mut clients {
            let answer = rp
                .create_otp_authentication(CreateOtpAuthenticationRequest {
                    message: format!("Log in #{round}?"),
                    ..Default::default()
                })
                .await;
            match answer {
                Ok(_) => created += 1,
                Err(status) => assert_eq!(status.code(), Code::ResourceExhausted),
            }
        }
    }
    assert!(
        (27..=30).contains(&created),
        "three replicas together created {created} with a burst of 30"
    );
}

/// The relay is routed: a replica receives, on its own channel, only the
/// notices of the devices it holds streams of and of the applications it
/// holds waiters or subscribers of. Observed by listening on the replicas'
/// channels alongside them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_receives_only_the_notices_it_needs() {
    use assent_proto::v1::CreateOtpAuthenticationRequest;
    use sqlx::postgres::PgListener;

    let db = TestDb::create().await;
    let replica_a = TestServer::start(&db).await;
    let replica_b = TestServer::start(&db).await;
    let replica_c = TestServer::start(&db).await;
    let shop = TestApp::create(&db, "Example Shop").await;
    let other = TestApp::create(&db, "Other Shop").await;
    let alice = TestDevice::enroll(&replica_a, &shop, "alice").await;
    let bob = TestDevice::enroll(&replica_a, &shop, "bob").await;
    let mut alice_stream = alice.connect(&replica_a).await.expect("alice on A");
    let _bob_stream = bob.connect(&replica_c).await.expect("bob on C");

    // Which replica is which: the one holding each stream.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let replica_of = |device: String| {
        let pool = pool.clone();
        async move {
            let (replica,): (uuid::Uuid,) =
                sqlx::query_as("SELECT replica FROM presence WHERE device_id = $1::uuid")
                    .bind(device)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            replica
        }
    };
    let a = replica_of(alice.device_id.clone()).await;
    let c = replica_of(bob.device_id.clone()).await;
    assert_ne!(a, c);
    let mut on_a = PgListener::connect(&db.url).await.unwrap();
    on_a.listen(&format!("assent_r_{}", a.simple()))
        .await
        .unwrap();
    let mut on_c = PgListener::connect(&db.url).await.unwrap();
    on_c.listen(&format!("assent_r_{}", c.simple()))
        .await
        .unwrap();

    // A push to alice on B goes to A (alice's stream), not to C.
    let mut rp_b = rp_client(&replica_b, &shop.api_key).await;
    let push = rp_b
        .create_push_authentication(push_to("alice"))
        .await
        .unwrap()
        .into_inner();
    let Some(Body::ConfirmationRequest(_)) = alice_stream.next().await.expect("stream") else {
        panic!("alice's device on A must receive the push created on B");
    };
    let payload = within(5, "A to be notified", on_a.recv()).await.unwrap();
    assert!(payload.payload().contains(&push.transaction_id));
    assert!(payload.payload().contains("\"confirm\""));

    // C subscribes to the shop's events: from then on the shop's wake-ups
    // go to C too, while the cancellation for alice's device still goes to
    // A only.
    let mut rp_c = rp_client(&replica_c, &shop.api_key).await;
    let mut events_c = rp_c
        .subscribe(SubscribeRequest {
            after_cursor: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    rp_b.cancel_transaction(CancelTransactionRequest {
        transaction_id: push.transaction_id.clone(),
    })
    .await
    .unwrap();
    let to_c = within(5, "C to be woken for the shop", on_c.recv())
        .await
        .unwrap();
    assert!(
        to_c.payload().contains("events_appended"),
        "{}",
        to_c.payload()
    );
    assert!(to_c.payload().contains(&shop.id));
    assert!(
        !to_c.payload().contains("withdraw"),
        "alice's cancellation is not C's business: {}",
        to_c.payload()
    );
    assert!(
        !to_c.payload().contains("\"settled\""),
        "C has no outcome waiters: {}",
        to_c.payload()
    );
    let Some(Body::Cancellation(_)) = alice_stream.next().await.expect("stream") else {
        panic!("the cancellation on B must reach alice's device on A");
    };
    until_event(
        &mut events_c,
        &push.transaction_id,
        "transaction.cancelled",
        "C's subscriber to read the cancellation",
    )
    .await;

    // A waiter on C gets an outcome decided on B at once (its slow re-read
    // comes only after 5 s), and C the settled transaction with it.
    let waited = rp_b
        .create_push_authentication(push_to("alice"))
        .await
        .unwrap()
        .into_inner();
    let Some(Body::ConfirmationRequest(_)) = alice_stream.next().await.expect("stream") else {
        panic!("the second push must reach alice");
    };
    let waiter = tokio::spawn({
        let mut rp_c = rp_c.clone();
        let id = waited.transaction_id.clone();
        async move {
            rp_c.wait_transaction(assent_proto::v1::WaitTransactionRequest {
                transaction_id: id,
                timeout_ms: 20_000,
            })
            .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let cancelled_at = std::time::Instant::now();
    rp_b.cancel_transaction(CancelTransactionRequest {
        transaction_id: waited.transaction_id.clone(),
    })
    .await
    .unwrap();
    within(5, "the waiter on C", waiter).await.unwrap().unwrap();
    assert!(
        cancelled_at.elapsed() < std::time::Duration::from_secs(3),
        "woken by the relayed outcome, not by its slow re-read"
    );
    within(5, "C to be sent the settled transaction", async {
        loop {
            let payload = on_c.recv().await.unwrap();
            if payload.payload().contains("\"settled\"")
                && payload.payload().contains(&waited.transaction_id)
            {
                return;
            }
        }
    })
    .await;

    // Another application's traffic wakes neither A nor C: nobody there
    // waits for it, subscribes to it or holds its devices.
    let mut other_b = rp_client(&replica_b, &other.api_key).await;
    let otp = other_b
        .create_otp_authentication(CreateOtpAuthenticationRequest {
            message: "Log in to Other Shop?".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    other_b
        .cancel_transaction(CancelTransactionRequest {
            transaction_id: otp.transaction_id.clone(),
        })
        .await
        .unwrap();
    // Markers after it, one for each: anything of the other shop would
    // come before them.
    let marker = |user: &'static str| {
        let mut rp = rp_b.clone();
        async move {
            rp.create_push_authentication(push_to(user))
                .await
                .unwrap()
                .into_inner()
                .transaction_id
        }
    };
    let to_a = marker("alice").await;
    let to_c = marker("bob").await;
    for (name, listener, marker) in [("A", &mut on_a, to_a), ("C", &mut on_c, to_c)] {
        within(5, "the marker", async {
            loop {
                let payload = listener.recv().await.unwrap();
                assert!(
                    !payload.payload().contains(&other.id)
                        && !payload.payload().contains(&otp.transaction_id),
                    "{name} was sent the other shop's notice: {}",
                    payload.payload()
                );
                if payload.payload().contains(&marker) {
                    return;
                }
            }
        })
        .await;
    }
}

/// Bursts of notices — more than a publisher sends one by one — reach the
/// other replica whole: every push of a burst arrives at its device, then
/// every cancellation of the next burst (a publisher that found itself
/// behind gathers before it publishes again, and publishes again), in
/// fewer payloads than notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_notices_reach_the_other_replica_whole() {
    use sqlx::postgres::PgListener;

    const USERS: usize = 24;
    let db = TestDb::create().await;
    let replica_a = TestServer::start(&db).await;
    let replica_b = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let mut streams = Vec::new();
    for i in 0..USERS {
        let device = TestDevice::enroll(&replica_b, &app, &format!("user-{i}")).await;
        streams.push(device.connect(&replica_b).await.expect("connect to B"));
    }
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let (b,): (uuid::Uuid,) = sqlx::query_as("SELECT DISTINCT replica FROM presence")
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut on_b = PgListener::connect(&db.url).await.unwrap();
    on_b.listen(&format!("assent_r_{}", b.simple()))
        .await
        .unwrap();

    let rp_a = rp_client(&replica_a, &app.api_key).await;
    let created = futures::future::join_all((0..USERS).map(|i| {
        let mut rp = rp_a.clone();
        async move {
            rp.create_push_authentication(push_to(&format!("user-{i}")))
                .await
                .expect("push on A")
                .into_inner()
                .transaction_id
        }
    }))
    .await;
    for (stream, id) in streams.iter_mut().zip(&created) {
        let request = within(10, "the push to reach its device on B", stream.next()).await;
        let Ok(Some(Body::ConfirmationRequest(request))) = request else {
            panic!("every push of the burst must reach its device on B");
        };
        assert_eq!(&request.transaction_id, id);
    }
    futures::future::join_all(created.iter().map(|id| {
        let mut rp = rp_a.clone();
        async move {
            rp.cancel_transaction(CancelTransactionRequest {
                transaction_id: id.clone(),
            })
            .await
            .expect("cancel on A")
        }
    }))
    .await;
    for (stream, id) in streams.iter_mut().zip(&created) {
        let cancelled = within(10, "the cancellation to reach B", stream.next()).await;
        let Ok(Some(Body::Cancellation(cancellation))) = cancelled else {
            panic!("every cancellation of the second burst must reach its device on B");
        };
        assert_eq!(&cancellation.transaction_id, id);
    }
    // Each transaction's push and cancellation, on B's channel.
    let mut unseen: Vec<(&String, &str)> = created
        .iter()
        .flat_map(|id| [(id, "\"confirm\""), (id, "\"withdraw\"")])
        .collect();
    let mut payloads = 0;
    within(10, "both bursts on B's channel", async {
        while !unseen.is_empty() {
            let payload = on_b.recv().await.unwrap();
            let payload = payload.payload();
            payloads += 1;
            unseen.retain(|(id, kind)| !(payload.contains(id.as_str()) && payload.contains(kind)));
        }
    })
    .await;
    assert!(
        payloads < 2 * USERS,
        "{} notices in {payloads} payloads: the bursts were not gathered",
        2 * USERS
    );
}

/// A replica's listener rows: taken once per application however often,
/// gone when the replica stops, and when its lease ran out.
#[tokio::test]
async fn listener_rows_follow_the_replica() {
    use assent_server::store::Interest;
    let db = TestDb::create().await;
    let shop = TestApp::create(&db, "Example Shop").await;
    let app = assent_server::domain::ApplicationId::parse(&shop.id).unwrap();
    let store = db.store().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let rows = |replica: uuid::Uuid| {
        let pool = pool.clone();
        async move {
            let (count,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM listeners WHERE replica = $1")
                    .bind(replica)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            count
        }
    };
    let now = chrono::Utc::now();
    let (stopping, dying) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    for replica in [stopping, dying] {
        store
            .renew_replica(replica, now + chrono::TimeDelta::seconds(30))
            .await
            .unwrap();
        for interest in [Interest::Events, Interest::Outcomes, Interest::Events] {
            store
                .application_listened(app, interest, replica)
                .await
                .unwrap();
        }
        assert_eq!(rows(replica).await, 2, "one row per kind");
    }
    store
        .application_unlistened(app, Interest::Events, stopping)
        .await
        .unwrap();
    assert_eq!(rows(stopping).await, 1, "only the kind given up");
    store.replica_stopped(stopping).await.unwrap();
    assert_eq!(rows(stopping).await, 0, "a clean stop takes its rows");
    assert_eq!(rows(dying).await, 2);
    store
        .forget_dead_replicas(now + chrono::TimeDelta::seconds(31))
        .await
        .unwrap();
    assert_eq!(rows(dying).await, 0, "a lease that ran out takes them too");
}

/// A replica alone publishes nothing, and one that joins it says hello: a
/// push created on the first reaches a device on the newcomer at once, not
/// at the session's 30 s re-read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_joins_a_lone_one_is_sent_its_notices_at_once() {
    let db = TestDb::create().await;
    let first = TestServer::start(&db).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let device = TestDevice::enroll(&first, &app, "alice").await;
    // The first has counted the others (none) by now.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let newcomer = TestServer::start(&db).await;
    let mut stream = device
        .connect(&newcomer)
        .await
        .expect("connect to the newcomer");
    let mut rp = rp_client(&first, &app.api_key).await;
    let push = rp
        .create_push_authentication(push_to("alice"))
        .await
        .unwrap()
        .into_inner();
    let request = within(5, "the push on the newcomer", stream.next()).await;
    let Some(Body::ConfirmationRequest(request)) = request.expect("stream") else {
        panic!("the device on the newcomer must receive the push");
    };
    assert_eq!(request.transaction_id, push.transaction_id);
}

/// A replica's hold on an application's route: one row however many wait,
/// kept while any of them waits and for a while after, given up once
/// unused, and taken again by the next waiter.
#[tokio::test]
async fn a_route_is_held_while_used_and_given_up_when_not() {
    use assent_server::notify::Notifier;
    use assent_server::store::{Interest, Store};
    use std::time::Duration;

    let db = TestDb::create().await;
    let shop = TestApp::create(&db, "Example Shop").await;
    let app = assent_server::domain::ApplicationId::parse(&shop.id).unwrap();
    let store: std::sync::Arc<dyn Store> = db.store().await;
    let (notifier, _relay) = Notifier::with_relay(Some(store));
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let rows = || {
        let pool = pool.clone();
        let replica = notifier.replica();
        async move {
            let (count,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM listeners WHERE replica = $1")
                    .bind(replica)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            count
        }
    };
    let first = notifier.listen_application(app, Interest::Outcomes).await;
    let second = notifier.listen_application(app, Interest::Outcomes).await;
    assert_eq!(rows().await, 1, "one row however many wait");
    assert_eq!(notifier.prune_listeners_idle_for(Duration::ZERO).await, 0);
    drop(first);
    assert_eq!(
        notifier.prune_listeners_idle_for(Duration::ZERO).await,
        0,
        "kept while one still waits"
    );
    drop(second);
    assert_eq!(
        notifier.prune_listeners().await,
        0,
        "kept for a while after the last left"
    );
    assert_eq!(rows().await, 1);
    assert_eq!(notifier.prune_listeners_idle_for(Duration::ZERO).await, 1);
    assert_eq!(rows().await, 0, "given up once unused");
    let _again = notifier.listen_application(app, Interest::Outcomes).await;
    assert_eq!(rows().await, 1, "taken again by the next waiter");
}
