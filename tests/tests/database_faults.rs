//! A slow, locked or restarting PostgreSQL gives clear, bounded, retryable
//! answers — never INTERNAL — and the server recovers by itself. PostgreSQL
//! only: table locks and restarts are its failure modes (a private database
//! per test; restarts are simulated by a proxy that cuts every connection).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use assent_proto::v1::{
    CreateEnrollmentRequest, CreateOtpAuthenticationRequest, GetTransactionRequest,
    ListDevicesRequest,
};
use assent_tests::{FaultProxy, RpClient, TestApp, TestDb, TestServer, rp_client, within};
use sqlx::Connection;
use tokio::sync::Mutex;
use tonic::Code;

fn otp_request() -> CreateOtpAuthenticationRequest {
    CreateOtpAuthenticationRequest {
        message: "Log in?".to_owned(),
        ..Default::default()
    }
}

/// Holds `LOCK TABLE transactions` until the returned connection is dropped.
async fn lock_transactions(db: &TestDb) -> sqlx::PgConnection {
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query("LOCK TABLE transactions IN ACCESS EXCLUSIVE MODE")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_table_gives_unavailable_in_bounded_time_and_other_tables_keep_working() {
    let db = TestDb::create().await;
    let server = TestServer::start_with(&db, |config| {
        config.db_statement_timeout_ms = 1000;
        config.max_db_connections = 4;
    })
    .await;
    let app = TestApp::create(&db, "Shop").await;
    let mut rp = rp_client(&server, &app.api_key).await;
    let created = rp
        .create_otp_authentication(otp_request())
        .await
        .unwrap()
        .into_inner();
    let lock = lock_transactions(&db).await;

    // More calls on the locked table than the pool has connections.
    let started = Instant::now();
    let blocked = futures::future::join_all((0..8).map(|_| {
        let mut rp = rp.clone();
        async move { rp.create_otp_authentication(otp_request()).await }
    }));
    let other_tables = async {
        // Calls on other tables are served meanwhile.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut rp = rp.clone();
        let at = Instant::now();
        rp.create_enrollment(CreateEnrollmentRequest {
            user_id: "alice".to_owned(),
            ttl_seconds: 0,
        })
        .await
        .expect("an enrollment code while transactions are locked");
        rp.list_devices(ListDevicesRequest::default())
            .await
            .expect("devices while transactions are locked");
        at.elapsed()
    };
    let (blocked, other_took) = tokio::join!(blocked, other_tables);
    for answer in &blocked {
        let status = answer
            .as_ref()
            .expect_err("the locked table cannot be written");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
    let bound = Duration::from_millis(3500);
    assert!(
        started.elapsed() < bound,
        "answered after {:?}",
        started.elapsed()
    );
    assert!(
        other_took < Duration::from_secs(2),
        "other tables took {other_took:?}"
    );
    let read = rp
        .get_transaction(GetTransactionRequest {
            transaction_id: created.transaction_id.clone(),
        })
        .await
        .expect_err("the locked table cannot be read either");
    assert_eq!(read.code(), Code::Unavailable);
    assert!(read.message().contains("retry"), "{}", read.message());

    drop(lock);
    rp.create_otp_authentication(otp_request())
        .await
        .expect("served again once the lock is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_have_a_deadline_and_excess_calls_are_shed() {
    let db = TestDb::create().await;
    let server = TestServer::start_with(&db, |config| {
        config.db_statement_timeout_ms = 5000;
        config.request_timeout_ms = 500;
        config.max_concurrent_requests = 2;
    })
    .await;
    let app = TestApp::create(&db, "Shop").await;
    let rp = rp_client(&server, &app.api_key).await;
    let lock = lock_transactions(&db).await;
    let started = Instant::now();
    let answers = futures::future::join_all((0..6).map(|_| {
        let mut rp = rp.clone();
        async move { rp.create_otp_authentication(otp_request()).await }
    }))
    .await;
    let codes: Vec<Code> = answers
        .iter()
        .map(|a| a.as_ref().unwrap_err().code())
        .collect();
    let deadline = codes
        .iter()
        .filter(|&&c| c == Code::DeadlineExceeded)
        .count();
    let shed = codes.iter().filter(|&&c| c == Code::Unavailable).count();
    assert_eq!(deadline + shed, 6, "{codes:?}");
    assert!(deadline >= 1 && shed >= 1, "{codes:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(lock);
}

/// What a client saw during the restarts.
#[derive(Default)]
struct Observed {
    codes: BTreeMap<String, usize>,
    acknowledged: Vec<String>,
}

async fn load(mut rp: RpClient, stop: Arc<AtomicBool>, observed: Arc<Mutex<Observed>>) {
    while !stop.load(Ordering::Acquire) {
        let mut request = tonic::Request::new(otp_request());
        request.set_timeout(Duration::from_secs(5));
        let answer = rp.create_otp_authentication(request).await;
        let mut observed = observed.lock().await;
        match answer {
            Ok(created) => {
                *observed.codes.entry("OK".to_owned()).or_default() += 1;
                observed
                    .acknowledged
                    .push(created.into_inner().transaction_id);
            }
            Err(status) => {
                *observed
                    .codes
                    .entry(format!("{:?}", status.code()))
                    .or_default() += 1;
                drop(observed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_database_restarts_under_load_give_no_internal_errors_and_lose_nothing() {
    const RESTARTS: usize = 20;
    let db = TestDb::create().await;
    let proxy = FaultProxy::start(db.address()).await;
    let url = proxy.postgres_url(&db.url);
    let server = TestServer::start_with(&db, |config| {
        config.database_url = Some(url);
        config.db_acquire_timeout_ms = 1000;
        config.create_burst = 1_000_000;
        config.create_rate_per_second = 1e6;
    })
    .await;
    let app = TestApp::create(&db, "Shop").await;
    let stop = Arc::new(AtomicBool::new(false));
    let observed = Arc::new(Mutex::new(Observed::default()));
    let mut workers = Vec::new();
    for _ in 0..3 {
        let rp = rp_client(&server, &app.api_key).await;
        workers.push(tokio::spawn(load(
            rp,
            Arc::clone(&stop),
            Arc::clone(&observed),
        )));
    }
    let mut rp = rp_client(&server, &app.api_key).await;
    let mut recoveries = Vec::new();
    for _ in 0..RESTARTS {
        tokio::time::sleep(Duration::from_millis(150)).await;
        proxy.down();
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.up();
        let back = Instant::now();
        loop {
            if rp.create_otp_authentication(otp_request()).await.is_ok() {
                break;
            }
            assert!(
                back.elapsed() < Duration::from_secs(10),
                "no recovery after a restart"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        recoveries.push(back.elapsed());
    }
    stop.store(true, Ordering::Release);
    for worker in workers {
        worker.await.unwrap();
    }
    let observed = observed.lock().await;
    eprintln!("answers: {:?}; recoveries: {recoveries:?}", observed.codes);
    for code in observed.codes.keys() {
        assert!(
            code == "OK" || code == "Unavailable" || code == "DeadlineExceeded",
            "unexpected answers during restarts: {:?}",
            observed.codes
        );
    }
    assert!(observed.codes.get("OK").copied().unwrap_or(0) > RESTARTS);
    // Every acknowledged creation is there.
    for id in &observed.acknowledged {
        rp.get_transaction(GetTransactionRequest {
            transaction_id: id.clone(),
        })
        .await
        .expect("an acknowledged transaction was stored");
    }
}

/// Two replicas reach PostgreSQL through a proxy that cuts everything for a
/// while: calls fail fast with UNAVAILABLE, and once the database is back,
/// without a restart, LISTEN works again (a push created on one replica
/// reaches a device connected to the other) and a transaction that became
/// overdue during the outage is expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_replicas_relay_again_and_expire_what_became_overdue() {
    use assent_proto::signing::SignedVerdict;
    use assent_proto::v1::server_message::Body;
    use assent_proto::v1::{CreatePushAuthenticationRequest, TransactionState};
    use assent_tests::TestDevice;

    let db = TestDb::create().await;
    let proxy = FaultProxy::start(db.address()).await;
    let url = proxy.postgres_url(&db.url);
    let start = |url: String| {
        let db = &db;
        async move {
            TestServer::start_with(db, move |config| {
                config.database_url = Some(url);
                config.db_acquire_timeout_ms = 1000;
                config.sweep_interval_ms = 100;
            })
            .await
        }
    };
    let replica_a = start(url.clone()).await;
    let replica_b = start(url).await;
    let app = TestApp::create(&db, "Shop").await;
    let device = TestDevice::enroll(&replica_a, &app, "alice").await;
    let mut stream = device.connect(&replica_a).await.expect("connect to A");
    let mut rp_b = rp_client(&replica_b, &app.api_key).await;
    // Overdue during the outage: the shortest lifetime allowed.
    let short = rp_b
        .create_otp_authentication(CreateOtpAuthenticationRequest {
            message: "Log in?".to_owned(),
            ttl_seconds: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();

    proxy.down();
    let started = Instant::now();
    let refused = rp_b
        .create_otp_authentication(otp_request())
        .await
        .expect_err("no database, no login");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failed within the bound, took {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    proxy.up();

    // The same replicas, no restart: the overdue login is expired...
    let expired = within(15, "the overdue login to be expired", async {
        loop {
            let answer = rp_b
                .get_transaction(GetTransactionRequest {
                    transaction_id: short.transaction_id.clone(),
                })
                .await;
            if let Ok(answer) = answer {
                let answer = answer.into_inner();
                if answer
                    .last_event
                    .as_ref()
                    .is_some_and(|e| e.r#type == "transaction.expired")
                {
                    return answer.transaction.unwrap();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(expired.state(), TransactionState::Expired);
    // ... and a push created on B reaches the device on A (LISTEN is back).
    let push = within(15, "a push after the outage", async {
        loop {
            let created = rp_b
                .create_push_authentication(CreatePushAuthenticationRequest {
                    user_id: "alice".to_owned(),
                    message: "Log in?".to_owned(),
                    ..Default::default()
                })
                .await;
            if let Ok(created) = created {
                return created.into_inner();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let request = within(15, "the push to reach the device on A", async {
        loop {
            match stream.next().await {
                Ok(Some(Body::ConfirmationRequest(request)))
                    if request.transaction_id == push.transaction_id =>
                {
                    return request;
                }
                Ok(Some(_)) => {}
                other => panic!("the stream on A broke: {other:?}"),
            }
        }
    })
    .await;
    let answer = stream
        .decide(device.decision(&request, SignedVerdict::Accept, ""))
        .await;
    assert!(matches!(answer, Body::DecisionResult(_)), "{answer:?}");
}
