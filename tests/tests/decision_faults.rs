//! Faults around a decision (catalogue #52, #53, #56): a device answers a
//! confirmation while the connection between the server and PostgreSQL is
//! cut exactly at the decision's statement — before it reaches the
//! database, or after the database committed it with the answer withheld
//! from the server — then reconnects and re-sends the same signed decision,
//! to the same replica or to a second one on the same database. Every
//! transaction ends with exactly one outcome; the re-send gets that outcome
//! (applied by it when the first attempt never arrived, the stored one when
//! it did); a `WaitTransaction` and a `Subscribe` stream opened before the
//! cut see the outcome exactly once (a client resumes a failed stream from
//! its last cursor and repeats a failed wait, as `docs/relying-party.md`
//! asks). PostgreSQL only: the cut is a TCP proxy in front of it
//! (`tests/src/fault_proxy.rs`) that recognises the decision's `Bind`
//! message by the signature it carries.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use assent_proto::signing::SignedVerdict;
use assent_proto::v1::server_message::Body;
use assent_proto::v1::{
    ConfirmationRequest, CreateOtpAuthenticationRequest, Event, SignedDecision, SubmitOtp,
    SubscribeRequest, TransactionState, WaitTransactionRequest, agent_message,
};
use assent_tests::fault_proxy::CutAt;
use assent_tests::{DeviceStream, FaultProxy, RpClient, TestApp, TestDb, TestDevice, TestServer};
use assent_tests::{rp_client, within};
use sqlx::Connection;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tonic::Code;

/// Rounds per test: each cuts the database once (about 0.3–0.5 s a round).
const ROUNDS: usize = 24;

/// Replicas on one database, each reaching it through the one proxy.
struct World {
    db: TestDb,
    proxy: FaultProxy,
    replicas: Vec<TestServer>,
    app: TestApp,
    device: TestDevice,
}

impl World {
    async fn start(replicas: usize) -> Self {
        let db = TestDb::create().await;
        let proxy = FaultProxy::start(db.address()).await;
        let mut servers = Vec::new();
        for _ in 0..replicas {
            let url = proxy.postgres_url(&db.url);
            servers.push(
                TestServer::start_with(&db, move |config| {
                    config.database_url = Some(url);
                    config.db_acquire_timeout_ms = 1000;
                    config.create_burst = 10_000;
                })
                .await,
            );
        }
        let app = TestApp::create(&db, "Fault Shop").await;
        let device = TestDevice::enroll(&servers[0], &app, "alice").await;
        Self {
            db,
            proxy,
            replicas: servers,
            app,
            device,
        }
    }

    async fn rp(&self, replica: usize) -> RpClient {
        rp_client(&self.replicas[replica], &self.app.api_key).await
    }

    /// A device stream on `replica`, retried while the database comes back.
    async fn connect(&self, replica: usize) -> DeviceStream {
        within(15, "the device to connect again", async {
            loop {
                match self.device.connect(&self.replicas[replica]).await {
                    Ok(stream) => return stream,
                    Err(status) => {
                        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        })
        .await
    }

    /// The transaction's state and outcome events, read past the proxy.
    async fn stored(&self, transaction_id: &str) -> (String, Vec<String>) {
        let mut conn = sqlx::PgConnection::connect(&self.db.url)
            .await
            .expect("connect");
        let state: String =
            sqlx::query_scalar("SELECT state FROM transactions WHERE id = $1::uuid")
                .bind(transaction_id)
                .fetch_one(&mut conn)
                .await
                .expect("the transaction");
        let outcomes: Vec<String> = sqlx::query_scalar(
            "SELECT type FROM events WHERE transaction_id = $1::uuid \
               AND type NOT IN ('transaction.created', 'transaction.scanned') ORDER BY position",
        )
        .bind(transaction_id)
        .fetch_all(&mut conn)
        .await
        .expect("events");
        (state, outcomes)
    }
}

impl World {
    /// The nonce of a transaction once it is scanned, read past the proxy.
    async fn scanned_nonce(&self, transaction_id: &str) -> Option<Vec<u8>> {
        let mut conn = sqlx::PgConnection::connect(&self.db.url)
            .await
            .expect("connect");
        sqlx::query_scalar(
            "SELECT nonce FROM transactions WHERE id = $1::uuid AND state = 'SCANNED'",
        )
        .bind(transaction_id)
        .fetch_optional(&mut conn)
        .await
        .expect("the transaction")
    }

    /// The transaction's events as stored: (position, type, xid), and the
    /// oldest transaction id still running.
    async fn events_of(&self, transaction_id: &str) -> (Vec<(i64, String, String)>, String) {
        let mut conn = sqlx::PgConnection::connect(&self.db.url)
            .await
            .expect("connect");
        let events = sqlx::query_as(
            "SELECT position, type, xid::text FROM events WHERE transaction_id = $1::uuid \
               ORDER BY position",
        )
        .bind(transaction_id)
        .fetch_all(&mut conn)
        .await
        .expect("events");
        let xmin: String =
            sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
                .fetch_one(&mut conn)
                .await
                .expect("xmin");
        (events, xmin)
    }
}

/// A relying party's subscriber: resumes from its last cursor whenever the
/// stream fails (the database cut ends it `UNAVAILABLE`).
struct Subscriber {
    events: Arc<Mutex<Vec<Event>>>,
    resumed: Arc<Mutex<BTreeMap<String, usize>>>,
    task: JoinHandle<()>,
}

impl Subscriber {
    async fn open(mut rp: RpClient) -> Self {
        let events = Arc::new(Mutex::new(Vec::<Event>::new()));
        let resumed = Arc::new(Mutex::new(BTreeMap::new()));
        // The first stream is open before the test goes on.
        let first = rp
            .subscribe(SubscribeRequest {
                after_cursor: 0,
                from_head: false,
            })
            .await
            .expect("subscribe")
            .into_inner();
        let task = {
            let (events, resumed) = (Arc::clone(&events), Arc::clone(&resumed));
            tokio::spawn(async move {
                let mut stream = Some(first);
                loop {
                    let mut current = match stream.take() {
                        Some(current) => current,
                        None => {
                            let after = events.lock().await.last().map_or(0, |e| e.cursor);
                            match rp
                                .subscribe(SubscribeRequest {
                                    after_cursor: after,
                                    from_head: false,
                                })
                                .await
                            {
                                Ok(resumed) => resumed.into_inner(),
                                Err(status) => {
                                    note(&resumed, &status).await;
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                    continue;
                                }
                            }
                        }
                    };
                    loop {
                        match current.message().await {
                            Ok(Some(event)) => events.lock().await.push(event),
                            Ok(None) => break,
                            Err(status) => {
                                note(&resumed, &status).await;
                                break;
                            }
                        }
                    }
                }
            })
        };
        Self {
            events,
            resumed,
            task,
        }
    }

    /// The outcome events of `transaction_id` seen so far.
    async fn outcomes_of(&self, transaction_id: &str) -> Vec<String> {
        self.events
            .lock()
            .await
            .iter()
            .filter(|e| e.transaction_id == transaction_id)
            .filter(|e| e.r#type != "transaction.created" && e.r#type != "transaction.scanned")
            .map(|e| e.r#type.clone())
            .collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn note(counts: &Mutex<BTreeMap<String, usize>>, status: &tonic::Status) {
    *counts
        .lock()
        .await
        .entry(format!("{:?}", status.code()))
        .or_default() += 1;
}

/// A relying party's `WaitTransaction`, repeated when it fails with a
/// retryable status; the terminal state it returned and how many calls.
async fn wait_for_outcome(mut rp: RpClient, transaction_id: String) -> (TransactionState, usize) {
    let mut calls = 0;
    loop {
        calls += 1;
        let answer = rp
            .wait_transaction(WaitTransactionRequest {
                transaction_id: transaction_id.clone(),
                timeout_ms: 30_000,
            })
            .await;
        match answer {
            Ok(answer) => {
                let answer = answer.into_inner();
                assert!(!answer.timed_out, "no outcome within 30 s");
                let event = answer.last_event.expect("the outcome event");
                let state = answer.transaction.expect("transaction").state();
                assert_eq!(event.r#type, outcome_event(state), "{event:?}");
                return (state, calls);
            }
            Err(status) => {
                assert!(
                    matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded),
                    "a wait across a cut: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn outcome_event(state: TransactionState) -> &'static str {
    match state {
        TransactionState::Accepted => "transaction.accepted",
        TransactionState::Denied => "transaction.denied",
        TransactionState::Expired => "transaction.expired",
        TransactionState::Cancelled => "transaction.cancelled",
        TransactionState::Failed => "transaction.failed",
        other => panic!("{other:?} is not an outcome"),
    }
}

/// Creates an OTP login through `rp`, retried while the database comes back.
async fn create(rp: &mut RpClient) -> (String, String) {
    within(15, "a login to be created", async {
        loop {
            let created = rp
                .create_otp_authentication(CreateOtpAuthenticationRequest {
                    message: "Log in to Fault Shop?".to_owned(),
                    ttl_seconds: 120,
                    ..Default::default()
                })
                .await;
            match created {
                Ok(created) => {
                    let created = created.into_inner();
                    return (created.transaction_id, created.otp);
                }
                Err(status) => {
                    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
    .await
}

/// Hands in `otp`: its confirmation request (a confirmation re-offered on
/// connect, still on its way, is skipped).
async fn scan(stream: &mut DeviceStream, otp: &str, round: usize) -> ConfirmationRequest {
    let request_id = 1000 + u64::try_from(round).unwrap();
    stream
        .send(agent_message::Body::SubmitOtp(SubmitOtp {
            request_id,
            otp: otp.to_owned(),
        }))
        .await;
    loop {
        match stream
            .next()
            .await
            .expect("stream alive")
            .expect("a message")
        {
            Body::ConfirmationRequest(request) if request.request_id == request_id => {
                return request;
            }
            Body::ConfirmationRequest(request) if request.request_id == 0 => {}
            other => panic!("a scan got {other:?}"),
        }
    }
}

/// The next answer to a decision (confirmations re-offered on connect —
/// the open ones as they were when the session read them, this one's too —
/// are skipped).
async fn answer_to(stream: &mut DeviceStream) -> Body {
    loop {
        match stream
            .next()
            .await
            .expect("stream alive")
            .expect("a message")
        {
            Body::ConfirmationRequest(request) if request.request_id == 0 => {}
            other => return other,
        }
    }
}

/// Sends `decision` on `stream` until the server answers it with a result;
/// re-offered confirmation requests of the same transaction are skipped,
/// `UNAVAILABLE` rejections (the pool still reconnecting) repeat it.
async fn resend(stream: &mut DeviceStream, decision: &SignedDecision) -> (TransactionState, bool) {
    within(15, "an answer to the re-sent decision", async {
        loop {
            stream
                .send(agent_message::Body::Decision(decision.clone()))
                .await;
            loop {
                match stream
                    .next()
                    .await
                    .expect("stream alive")
                    .expect("a message")
                {
                    Body::DecisionResult(result) => {
                        assert_eq!(result.transaction_id, decision.transaction_id);
                        return (result.state(), result.applied);
                    }
                    Body::ConfirmationRequest(request)
                        if request.transaction_id == decision.transaction_id => {}
                    Body::Rejection(rejection) if rejection.code == Code::Unavailable as i32 => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        break;
                    }
                    other => panic!("the re-sent decision got {other:?}"),
                }
            }
        }
    })
    .await
}

/// One scenario: `ROUNDS` logins, each decided on replica 0 with the
/// database cut `at` the decision (every connection, or only the deciding
/// one), re-sent on `resend_on(round)` (if at all); a waiter on
/// `wait_on(round)`, a subscriber on every replica.
async fn decisions_across_cuts(
    replicas: usize,
    (at, everything): (CutAt, bool),
    resend_on: impl Fn(usize) -> Option<usize>,
    wait_on: impl Fn(usize) -> usize,
) {
    let started = Instant::now();
    let world = World::start(replicas).await;
    let mut subscribers = Vec::new();
    for replica in 0..replicas {
        subscribers.push(Subscriber::open(world.rp(replica).await).await);
    }
    let mut rp = world.rp(0).await;
    let mut stream = world.connect(0).await;
    let mut waiters = Vec::new();
    let mut first_answers: BTreeMap<String, usize> = BTreeMap::new();
    let mut expected = Vec::new();
    for round in 0..ROUNDS {
        let (transaction_id, otp) = create(&mut rp).await;
        let request = scan(&mut stream, &otp, round).await;
        let (verdict, reason, state) = if round % 2 == 0 {
            (SignedVerdict::Accept, "", TransactionState::Accepted)
        } else {
            (SignedVerdict::Deny, "policy", TransactionState::Denied)
        };
        let decision = world.device.decision(&request, verdict, reason);
        // The waiter is in its wait before the cut.
        let waiter_rp = world.rp(wait_on(round)).await;
        waiters.push((
            transaction_id.clone(),
            state,
            tokio::spawn(wait_for_outcome(waiter_rp, transaction_id.clone())),
        ));
        tokio::time::sleep(Duration::from_millis(30)).await;

        let fired = if everything {
            world.proxy.cut_on(&decision.signature, at)
        } else {
            world.proxy.cut_connection_on(&decision.signature, at)
        };
        stream
            .send(agent_message::Body::Decision(decision.clone()))
            .await;
        let first = answer_to(&mut stream).await;
        within(5, "the cut at the decision", fired)
            .await
            .expect("the trap fired");
        let told = match &first {
            Body::Rejection(rejection) => format!("{:?}", Code::from(rejection.code)),
            other => panic!("round {round}: a decision whose commit was cut got {other:?}"),
        };
        *first_answers.entry(told).or_default() += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        world.proxy.up();

        // The device reconnects and re-sends the same signed decision (or
        // is gone for good: then the outcome stands as the cut left it).
        drop(stream);
        let resent_on = resend_on(round);
        let mut again = world.connect(resent_on.unwrap_or(0)).await;
        if let Some(replica) = resent_on {
            let (answered, applied) = resend(&mut again, &decision).await;
            assert_eq!(
                (answered, replica),
                (state, replica),
                "round {round}: the re-send's answer"
            );
            assert_eq!(
                applied,
                at == CutAt::Before,
                "round {round}: applied by the re-send only if the first never arrived"
            );
        }
        let (stored, outcomes) = world.stored(&transaction_id).await;
        if resent_on.is_none() && at == CutAt::Before {
            assert_eq!(stored, "SCANNED", "round {round}");
            assert!(outcomes.is_empty(), "round {round}: {outcomes:?}");
            waiters.pop().unwrap().2.abort();
        } else {
            assert_eq!(
                stored,
                state.as_str_name().trim_start_matches("TRANSACTION_STATE_"),
                "round {round}"
            );
            assert_eq!(
                outcomes,
                [outcome_event(state)],
                "round {round}: exactly one outcome"
            );
            expected.push((transaction_id, state));
        }
        stream = if resent_on.unwrap_or(0) == 0 {
            again
        } else {
            world.connect(0).await
        };
    }
    let mut wait_calls = 0;
    for (transaction_id, state, waiter) in waiters {
        let (seen, calls) = within(30, "the waiters", waiter).await.expect("waiter");
        assert_eq!(seen, state, "{transaction_id}: the waiter's outcome");
        wait_calls += calls;
    }
    for (replica, subscriber) in subscribers.iter().enumerate() {
        for (transaction_id, state) in &expected {
            let deadline = Instant::now() + Duration::from_secs(15);
            let seen = loop {
                let seen = subscriber.outcomes_of(transaction_id).await;
                if !seen.is_empty() {
                    // Anything after the first copy would come with it.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    break subscriber.outcomes_of(transaction_id).await;
                }
                if Instant::now() > deadline {
                    let held = subscriber.events.lock().await;
                    let last = held.last().map(|e| (e.cursor, e.r#type.clone()));
                    let resumed = subscriber.resumed.lock().await.clone();
                    let stored = world.events_of(transaction_id).await;
                    panic!(
                        "replica {replica}'s subscriber has not seen the outcome of \
                         {transaction_id} in 15 s: it holds {} events, the last {last:?}, \
                         resumed after {resumed:?}; stored: {stored:?}",
                        held.len()
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            assert_eq!(
                seen,
                [outcome_event(*state)],
                "replica {replica}'s subscriber, {transaction_id}"
            );
        }
        let events = subscriber.events.lock().await;
        let cursors: Vec<u64> = events.iter().map(|e| e.cursor).collect();
        assert!(
            cursors.windows(2).all(|w| w[0] < w[1]),
            "replica {replica}'s subscriber saw a cursor twice or out of order"
        );
    }
    let resumed: Vec<_> = {
        let mut all = Vec::new();
        for subscriber in &subscribers {
            all.push(subscriber.resumed.lock().await.clone());
        }
        all
    };
    eprintln!(
        "{ROUNDS} rounds, cut {at:?} (everything: {everything}), {replicas} replica(s): first answers {first_answers:?}; \
         {wait_calls} WaitTransaction calls for {ROUNDS} waits; subscribers resumed after {resumed:?}; \
         {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        first_answers.keys().collect::<Vec<_>>(),
        ["Unavailable"],
        "a cut decision is told UNAVAILABLE (retry), nothing else"
    );
}

/// #53: the decision never reaches the database; the device is told
/// `UNAVAILABLE`, reconnects to the same replica and re-sends: the re-send
/// is applied, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_53_a_decision_cut_before_commit_is_applied_once_by_its_resend() {
    decisions_across_cuts(1, (CutAt::Before, true), |_| Some(0), |_| 0).await;
}

/// #53 on two replicas: re-sent to the other replica (half the rounds), the
/// waiter on either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_53_a_decision_cut_before_commit_and_resent_to_another_replica_is_applied_once() {
    decisions_across_cuts(
        2,
        (CutAt::Before, true),
        |round| Some(1 - round % 2),
        |round| round / 2 % 2,
    )
    .await;
}

/// #56: the decision commits but its answer is lost; the device is told
/// `UNAVAILABLE`, reconnects and re-sends: it gets the stored outcome, not
/// a second transition nor an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_56_a_decision_committed_behind_a_cut_is_returned_as_stored_on_resend() {
    decisions_across_cuts(1, (CutAt::AfterReply, true), |_| Some(0), |_| 0).await;
}

/// #56 on two replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_56_a_decision_committed_behind_a_cut_and_resent_to_another_replica_is_returned_as_stored()
 {
    decisions_across_cuts(
        2,
        (CutAt::AfterReply, true),
        |round| Some(1 - round % 2),
        |round| round / 2 % 2,
    )
    .await;
}

/// #52: the decision commits behind the cut and the device never re-sends
/// (it is gone): no replica learnt of the outcome from its own write, so
/// only the database tells; the waiter (on the deciding replica and on the
/// other one) and the subscribers on both still see it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_52_waiters_and_subscribers_see_an_outcome_committed_behind_a_cut_once() {
    decisions_across_cuts(2, (CutAt::AfterReply, true), |_| None, |round| round % 2).await;
}

/// #52 with only the deciding connection broken (the database and the
/// other connections stay up, so no replica notices an outage and nothing
/// resynchronises): the waiters and subscribers still see the outcome,
/// once, within their safety nets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_52_waiters_and_subscribers_see_an_outcome_whose_connection_broke_after_commit_once() {
    decisions_across_cuts(2, (CutAt::AfterReply, false), |_| None, |round| round % 2).await;
}

/// #53 and #56 with the real agent (`assent-agent run`, two replicas named
/// in `--server`): its decision is cut before the database and after the
/// commit; the agent is told `UNAVAILABLE`, must keep the signed decision
/// and re-send it on a new stream (to the other replica), and the caller of
/// `assent-agent otp` gets the one outcome stored — not "rejected" while
/// the login was accepted, nor a login left waiting for an answer that was
/// lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_56_the_agent_resends_a_decision_told_unavailable_and_reports_the_one_outcome() {
    const AGENT_ROUNDS: usize = 3;
    let started = Instant::now();
    let world = World::start(2).await;
    let agent = assent_tests::EnrolledAgent::enroll(&world.replicas[0], &world.app, "bob").await;
    // The policy accepts once the test opens the gate (so the trap is
    // armed before the decision is signed).
    let gate = agent.work.join("gate");
    let policy = format!(
        "exec:while [ ! -e {0} ]; do sleep 0.02; done; rm -f {0}",
        gate.display()
    );
    let servers = format!("{},{}", world.replicas[0].url(), world.replicas[1].url());
    let _daemon = agent.run(&servers, &["--policy", &policy]);
    agent.wait_connected().await;
    let mut rp = world.rp(0).await;
    for at in [CutAt::Before, CutAt::AfterReply] {
        for round in 0..AGENT_ROUNDS {
            let (transaction_id, otp) = create(&mut rp).await;
            let pending = {
                let dir = agent.state_dir.clone();
                tokio::spawn(async move {
                    assent_agent::submit_otp(&dir, &otp, Duration::from_secs(60)).await
                })
            };
            // Scanned: the nonce the decision will carry is known now.
            let nonce = within(15, "the agent's scan", async {
                loop {
                    if let Some(nonce) = world.scanned_nonce(&transaction_id).await {
                        return nonce;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            let fired = world.proxy.cut_on(&nonce, at);
            std::fs::write(&gate, b"").expect("open the gate");
            within(10, "the cut at the agent's decision", fired)
                .await
                .expect("the trap fired");
            tokio::time::sleep(Duration::from_millis(200)).await;
            world.proxy.up();
            let outcome = within(45, "the outcome of assent-agent otp", pending)
                .await
                .expect("join")
                .expect("an outcome");
            assert!(
                outcome.ok && outcome.state.as_deref() == Some("ACCEPTED"),
                "{at:?}, round {round}: the caller was told {outcome:?}"
            );
            let (stored, outcomes) = world.stored(&transaction_id).await;
            assert_eq!(stored, "ACCEPTED", "{at:?}, round {round}");
            assert_eq!(
                outcomes,
                ["transaction.accepted"],
                "{at:?}, round {round}: exactly one outcome"
            );
        }
    }
    eprintln!(
        "{AGENT_ROUNDS} rounds per cut with the agent: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
