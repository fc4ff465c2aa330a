//! Three replicas on one PostgreSQL behind HAProxy (`deploy/haproxy.cfg`),
//! with agents, relying-party load and a subscriber running; each replica in
//! turn gets SIGTERM (drains) and starts again. Afterwards every acknowledged
//! login is in the database with exactly one outcome event, the subscriber
//! (resuming from its cursor) saw every event once in cursor order, every
//! agent is connected again, and clients only ever saw retryable statuses.
//! `ASSENT_ROLLING_ROUNDS` restarts the replicas more than once.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use assent_proto::v1::{
    CreatePushAuthenticationRequest, SubscribeRequest, TransactionState, WaitTransactionRequest,
};
use assent_tests::agent::EnrolledAgent;
use assent_tests::{Haproxy, RpClient, TestApp, TestDb, TestServer, rp_client_at, tools, within};
use sqlx::Connection;
use tokio::sync::Mutex;
use tonic::Code;

/// Statuses a client may see while replicas restart: it retries them.
fn retryable(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::DeadlineExceeded)
}

/// Pushes to `user` one after another, each waited for; returns the ids of
/// the pushes whose creation was acknowledged.
async fn push_load(
    mut rp: RpClient,
    user: String,
    stop: Arc<AtomicBool>,
    refused: Arc<Mutex<Vec<tonic::Status>>>,
) -> Vec<String> {
    let mut acknowledged = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let created = rp
            .create_push_authentication(CreatePushAuthenticationRequest {
                user_id: user.clone(),
                message: "Log in?".to_owned(),
                ttl_seconds: 30,
                ..Default::default()
            })
            .await;
        let id = match created {
            Ok(answer) => answer.into_inner().transaction_id,
            Err(status) => {
                // A creation whose answer was lost may still be open: wait
                // for the agent to answer it, then go on.
                if !(retryable(status.code()) || status.code() == Code::ResourceExhausted) {
                    refused.lock().await.push(status);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        acknowledged.push(id.clone());
        loop {
            let waited = rp
                .wait_transaction(WaitTransactionRequest {
                    transaction_id: id.clone(),
                    timeout_ms: 1500,
                })
                .await;
            match waited {
                Ok(answer) => {
                    let answer = answer.into_inner();
                    if !answer.timed_out {
                        break;
                    }
                }
                Err(status) => {
                    if !retryable(status.code()) {
                        refused.lock().await.push(status);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
    }
    acknowledged
}

/// Follows the event stream, resuming from the last cursor after every
/// break, until `stop` and no new event for a second.
async fn follow(
    mut rp: RpClient,
    stop: Arc<AtomicBool>,
    refused: Arc<Mutex<Vec<tonic::Status>>>,
) -> Vec<(u64, String, String)> {
    let mut seen: Vec<(u64, String, String)> = Vec::new();
    loop {
        let after = seen.last().map_or(0, |e| e.0);
        let stream = rp
            .subscribe(SubscribeRequest {
                after_cursor: after,
                from_head: false,
            })
            .await;
        let mut stream = match stream {
            Ok(stream) => stream.into_inner(),
            Err(status) => {
                if !retryable(status.code()) {
                    refused.lock().await.push(status);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        loop {
            let next = tokio::time::timeout(Duration::from_secs(1), stream.message()).await;
            match next {
                Ok(Ok(Some(event))) => {
                    seen.push((event.cursor, event.transaction_id, event.r#type))
                }
                Ok(Ok(None)) => break,
                Ok(Err(status)) => {
                    if !retryable(status.code()) {
                        refused.lock().await.push(status);
                    }
                    break;
                }
                Err(_idle) if stop.load(Ordering::Relaxed) => return seen,
                Err(_idle) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_restart_in_turn_behind_haproxy_under_load() {
    if !tools::can_run("rolling_restart", &[tools::HAPROXY]) {
        return;
    }
    let rounds: usize = std::env::var("ASSENT_ROLLING_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let db = TestDb::create().await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(
            TestServer::start_with(&db, |config| {
                config.create_burst = 100_000;
                config.create_rate_per_second = 100_000.0;
                config.drain_timeout_seconds = 3;
            })
            .await,
        );
    }
    let app = TestApp::create(&db, "Example Shop").await;

    // HAProxy with the repository's configuration.
    let haproxy = Haproxy::start([replicas[0].addr, replicas[1].addr, replicas[2].addr]).await;
    let lb = haproxy.url.clone();

    // Two agents through the load balancer, accepting.
    let mut agents = Vec::new();
    for user in ["alice", "bob"] {
        let agent = EnrolledAgent::enroll(&replicas[0], &app, user).await;
        let daemon = agent.run(&lb, &["--policy", "accept"]);
        agent.wait_connected().await;
        agents.push((agent, daemon));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(Mutex::new(Vec::new()));
    let rp = rp_client_at(&lb, &app.api_key).await;
    let loads: Vec<_> = ["alice", "bob"]
        .into_iter()
        .map(|user| {
            tokio::spawn(push_load(
                rp.clone(),
                user.to_owned(),
                Arc::clone(&stop),
                Arc::clone(&refused),
            ))
        })
        .collect();
    let follower = tokio::spawn(follow(rp.clone(), Arc::clone(&stop), Arc::clone(&refused)));

    // Each replica in turn: drain (SIGTERM path) and start again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..rounds {
        for replica in &mut replicas {
            replica.restart().await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for load in loads {
        acknowledged.extend(within(30, "the load to stop", load).await.unwrap());
    }
    let seen = within(60, "the subscriber to catch up", follower)
        .await
        .unwrap();

    eprintln!(
        "rolling restart: {} logins acknowledged, {} events followed",
        acknowledged.len(),
        seen.len()
    );
    let refused = refused.lock().await;
    assert!(refused.is_empty(), "non-retryable statuses: {refused:?}");
    assert!(
        acknowledged.len() >= 6,
        "only {} logins under load",
        acknowledged.len()
    );

    // Every acknowledged creation is stored with exactly one outcome event.
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    for id in &acknowledged {
        let outcomes: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE transaction_id = $1::uuid AND type IN \
             ('transaction.accepted', 'transaction.denied', 'transaction.expired', \
              'transaction.cancelled', 'transaction.failed')",
        )
        .bind(id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(outcomes, 1, "transaction {id}");
    }
    // The subscriber saw every event of the application once, in order.
    let stored: Vec<i64> = sqlx::query_scalar(
        "SELECT position FROM events WHERE application_id = $1::uuid ORDER BY position",
    )
    .bind(&app.id)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let cursors: Vec<u64> = seen.iter().map(|e| e.0).collect();
    assert!(
        cursors.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicate"
    );
    let stored: BTreeSet<u64> = stored
        .into_iter()
        .map(|p| u64::try_from(p).unwrap())
        .collect();
    assert_eq!(
        cursors.into_iter().collect::<BTreeSet<_>>(),
        stored,
        "every event once"
    );
    // The agents accept everything: every acknowledged login was accepted,
    // and the subscriber saw that acceptance.
    for id in &acknowledged {
        assert!(
            seen.iter()
                .any(|e| &e.1 == id && e.2 == "transaction.accepted"),
            "transaction {id} was not seen accepted"
        );
    }

    // Every agent is connected again, and answers.
    for (agent, _daemon) in &agents {
        agent.wait_connected().await;
    }
    let mut rp = rp_client_at(&lb, &app.api_key).await;
    let last = within(
        10,
        "a push through the load balancer after the restarts",
        async {
            loop {
                let created = rp
                    .create_push_authentication(CreatePushAuthenticationRequest {
                        user_id: "alice".to_owned(),
                        message: "Log in?".to_owned(),
                        ..Default::default()
                    })
                    .await;
                match created {
                    Ok(created) => return created.into_inner().transaction_id,
                    Err(status) if retryable(status.code()) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(status) => panic!("the last push was refused: {status:?}"),
                }
            }
        },
    )
    .await;
    let outcome = rp
        .wait_transaction(WaitTransactionRequest {
            transaction_id: last,
            timeout_ms: 10_000,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        outcome.transaction.unwrap().state(),
        TransactionState::Accepted
    );
}
