//! Standard Webhooks end to end: endpoints made with `assent-server app
//! webhook …`, a receiver (tests/webhook-receiver/receiver.js) that
//! verifies every delivery with the real `standardwebhooks` package, logins
//! by an agent that accepts. Every event arrives, once per `webhook-id`
//! after dedup, in cursor order — also while the receiver fails or times
//! out for a while, across a replica that stops, and across a pause.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use assent_tests::ports::free_address;
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use assent_proto::v1::{
    CreatePushAuthenticationRequest, Event, ListServerKeysRequest, TransactionState,
    WaitTransactionRequest,
};
use assent_server::ServerConfig;
use assent_tests::agent::{AgentProcess, EnrolledAgent};
use assent_tests::{
    RpClient, ScratchDir, TestApp, TestDb, TestServer, binary, rp_client, scratch_dir, tools,
    within,
};

/// The receiver, a Node process verifying with `standardwebhooks`.
struct Receiver {
    child: Child,
    port: u16,
    dir: ScratchDir,
}

impl Receiver {
    fn receiver_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("webhook-receiver")
    }

    async fn start() -> Self {
        use std::io::BufRead as _;
        let dir = scratch_dir("webhooks");
        std::fs::write(dir.join("control.json"), r#"{"secret":"","mode":"ok"}"#).unwrap();
        std::fs::write(dir.join("record.jsonl"), "").unwrap();
        let mut child = Command::new("node")
            .arg(Self::receiver_dir().join("receiver.js"))
            .arg(dir.join("control.json"))
            .arg(dir.join("record.jsonl"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start node");
        let stdout = child.stdout.take().unwrap();
        let port = within(10, "the receiver to listen", async {
            tokio::task::spawn_blocking(move || {
                let mut line = String::new();
                std::io::BufReader::new(stdout)
                    .read_line(&mut line)
                    .unwrap();
                line.trim()
                    .strip_prefix("listening ")
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .await
            .unwrap()
        })
        .await;
        Self { child, port, dir }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/assent", self.port)
    }

    /// How it answers from now on.
    fn set(&self, secret: &str, mode: &str, sleep_ms: u64) {
        let control = serde_json::json!({"secret": secret, "mode": mode, "sleep_ms": sleep_ms});
        let path = self.dir.join("control.json");
        let next = self.dir.join("control.next");
        std::fs::write(&next, control.to_string()).unwrap();
        std::fs::rename(next, path).unwrap();
    }

    /// The secret it verifies with now.
    fn secret(&self) -> String {
        let control = std::fs::read_to_string(self.dir.join("control.json")).unwrap();
        let control: serde_json::Value = serde_json::from_str(&control).unwrap();
        control["secret"].as_str().unwrap().to_owned()
    }

    /// Every recorded line.
    fn lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("record.jsonl"))
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The verified deliveries, deduplicated by `webhook-id`, in arrival
    /// order: (id, cursor, type, transaction id).
    fn deliveries(&self) -> Vec<(String, i64, String, String)> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for line in self.lines() {
            assert!(
                line.get("error").is_none(),
                "a delivery failed verification: {line}"
            );
            let id = line["id"].as_str().unwrap().to_owned();
            assert!(!line["key_id"].as_str().unwrap().is_empty(), "{line}");
            assert!(!line["signature"].as_str().unwrap().is_empty(), "{line}");
            if seen.insert(id.clone()) {
                out.push((
                    id,
                    line["cursor"].as_i64().unwrap(),
                    line["type"].as_str().unwrap().to_owned(),
                    line["transaction_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                ));
            }
        }
        out
    }

    /// Waits until every transaction in `expected` was delivered accepted.
    async fn until_accepted(&self, expected: &[String], secs: u64) {
        within(secs, "every accepted event at the receiver", async {
            loop {
                let accepted: HashSet<String> = self
                    .deliveries()
                    .into_iter()
                    .filter(|d| d.2 == "transaction.accepted")
                    .map(|d| d.3)
                    .collect();
                if expected.iter().all(|t| accepted.contains(t)) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the receiver has `count` distinct deliveries.
async fn until_delivered(receiver: &Receiver, count: usize, secs: u64) {
    within(secs, "deliveries at the receiver", async {
        while receiver.deliveries().len() < count {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// Whether the receiver's packages are installed (else "not run").
fn can_run(test: &str) -> bool {
    tools::can_run(test, &[tools::WEBHOOK_RECEIVER_PACKAGES])
}

/// Quick deliveries for tests: short timeout, lease and poll.
fn fast(config: &mut ServerConfig) {
    config.webhook_allow_private = true;
    config.webhook_request_timeout_ms = 1_000;
    config.webhook_lease_ms = 3_000;
    config.webhook_poll_ms = 100;
}

/// `assent-server app webhook ARGS… --json` on `db`; its JSON output, or
/// its stderr as the error.
fn cli(db: &TestDb, allow_private: bool, args: &[&str]) -> Result<serde_json::Value, String> {
    let mut command = Command::new(binary("assent-server"));
    command
        .args(["--database-url", &db.url, "app", "webhook"])
        .args(args)
        .arg("--json")
        .env_remove("ASSENT_WEBHOOK_ALLOW_PRIVATE");
    if allow_private {
        command.env("ASSENT_WEBHOOK_ALLOW_PRIVATE", "true");
    }
    let output = command.output().unwrap();
    if output.status.success() {
        Ok(serde_json::from_slice(&output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// An endpoint of `app` to `receiver`, which is told its secret; its id.
fn create_endpoint(db: &TestDb, app: &TestApp, receiver: &Receiver) -> String {
    let created = cli(
        db,
        true,
        &["create", "--app", &app.id, "--url", &receiver.url()],
    )
    .unwrap();
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    receiver.set(secret, "ok", 0);
    created["webhook_id"].as_str().unwrap().to_owned()
}

/// An app, an agent that accepts (connected to `servers`, comma-separated,
/// or to `server`), and its running daemon.
async fn accepting_agent(
    server: &TestServer,
    db: &TestDb,
    servers: Option<&str>,
) -> (TestApp, EnrolledAgent, AgentProcess) {
    let app = TestApp::create(db, "Example Shop").await;
    let agent = EnrolledAgent::enroll(server, &app, "alice").await;
    let url = server.url();
    let daemon = agent.run(servers.unwrap_or(&url), &["--policy", "accept"]);
    agent.wait_connected().await;
    (app, agent, daemon)
}

/// `count` push logins, one after the other, each accepted; their ids.
async fn logins(rp: &mut RpClient, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..count {
        let push = rp
            .create_push_authentication(CreatePushAuthenticationRequest {
                user_id: "alice".to_owned(),
                message: "Log in to Example Shop?".to_owned(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let outcome = rp
            .wait_transaction(WaitTransactionRequest {
                transaction_id: push.transaction_id.clone(),
                timeout_ms: 15_000,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            outcome.transaction.unwrap().state(),
            TransactionState::Accepted
        );
        ids.push(push.transaction_id);
    }
    ids
}

/// The deliveries are the application's events after the endpoint's
/// start, each once, in strictly increasing cursor order, and hold every
/// login's created and accepted events.
fn assert_complete_and_ordered(receiver: &Receiver, logins: &[String]) {
    let deliveries = receiver.deliveries();
    let cursors: Vec<i64> = deliveries.iter().map(|d| d.1).collect();
    assert!(
        cursors.windows(2).all(|w| w[0] < w[1]),
        "not in cursor order: {cursors:?}"
    );
    for login in logins {
        for kind in ["transaction.created", "transaction.accepted"] {
            assert!(
                deliveries.iter().any(|d| &d.3 == login && d.2 == kind),
                "{kind} of {login} missing: {deliveries:?}"
            );
        }
    }
    for d in &deliveries {
        assert!(
            d.0.starts_with("evt_") && d.0.ends_with(&format!("_{}", d.1)),
            "{d:?}"
        );
    }
}

async fn every_event_once_in_order(db: TestDb) {
    let server = TestServer::start_with(&db, fast).await;
    let (app, _agent, _daemon) = accepting_agent(&server, &db, None).await;
    let receiver = Receiver::start().await;
    create_endpoint(&db, &app, &receiver);
    let mut rp = rp_client(&server, &app.api_key).await;
    let ids = logins(&mut rp, 5).await;
    receiver.until_accepted(&ids, 20).await;
    assert_complete_and_ordered(&receiver, &ids);
    // Each delivery's `data` carries the server's Ed25519 signature over
    // the event, which verifies with a published key (as a Subscribe
    // event's does), and not once a field is changed.
    let keys = rp
        .list_server_keys(ListServerKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys;
    let lines = receiver.lines();
    assert!(!lines.is_empty());
    for line in lines {
        let mut event = event_of(&line["data"]);
        assent_proto::verify::verify_event(&event, &keys).unwrap_or_else(|e| panic!("{e}: {line}"));
        event.cursor += 1;
        assert!(assent_proto::verify::verify_event(&event, &keys).is_err());
    }
}

/// The event a webhook's `data` describes (docs/webhooks.md).
fn event_of(data: &serde_json::Value) -> Event {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    let text = |name: &str| data[name].as_str().unwrap_or_default().to_owned();
    let bytes = |name: &str| STANDARD.decode(text(name)).unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(&text("occurred_at")).unwrap();
    Event {
        cursor: data["cursor"].as_u64().unwrap(),
        r#type: text("type"),
        occurred_at: Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap(),
        }),
        transaction_id: text("transaction_id"),
        user_id: text("user_id"),
        device_id: text("device_id"),
        reason: text("reason"),
        fraud_reported: data["fraud_reported"].as_bool().unwrap(),
        binding: bytes("binding"),
        application_id: text("application_id"),
        key_id: text("key_id"),
        signature: bytes("signature"),
        ..Event::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_in_cursor_order_on_sqlite() {
    if !can_run("webhooks") {
        return;
    }
    every_event_once_in_order(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_in_cursor_order_on_postgres() {
    if !can_run("webhooks") {
        return;
    }
    every_event_once_in_order(TestDb::create().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_for_a_while_misses_nothing() {
    if !can_run("webhooks") {
        return;
    }
    let db = TestDb::sqlite();
    let server = TestServer::start_with(&db, fast).await;
    let (app, _agent, _daemon) = accepting_agent(&server, &db, None).await;
    let receiver = Receiver::start().await;
    let id = create_endpoint(&db, &app, &receiver);
    let secret = cli(&db, true, &["rotate", "--app", &app.id, "--id", &id]).unwrap();
    // Both signatures are sent during the grace period; either verifies.
    receiver.set(secret["secret"].as_str().unwrap(), "fail", 0);
    let mut rp = rp_client(&server, &app.api_key).await;
    let ids = logins(&mut rp, 3).await;
    within(15, "failed attempts in the delivery log", async {
        loop {
            let log = cli(&db, true, &["log", "--app", &app.id, "--id", &id]).unwrap();
            let failed = log
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["status"] == 500)
                .count();
            if failed >= 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let listed = cli(&db, true, &["list", "--app", &app.id]).unwrap();
    assert!(listed[0]["failures"].as_i64().unwrap() >= 1, "{listed}");
    assert_eq!(receiver.deliveries().len(), 0);
    receiver.set(secret["secret"].as_str().unwrap(), "ok", 0);
    receiver.until_accepted(&ids, 30).await;
    assert_complete_and_ordered(&receiver, &ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_timing_out_for_a_while_misses_nothing() {
    if !can_run("webhooks") {
        return;
    }
    let db = TestDb::sqlite();
    let server = TestServer::start_with(&db, fast).await;
    let (app, _agent, _daemon) = accepting_agent(&server, &db, None).await;
    let receiver = Receiver::start().await;
    let id = create_endpoint(&db, &app, &receiver);
    let key = receiver.secret();
    receiver.set(&key, "sleep", 3_000);
    let mut rp = rp_client(&server, &app.api_key).await;
    let ids = logins(&mut rp, 3).await;
    within(15, "a timed-out attempt in the delivery log", async {
        loop {
            let log = cli(&db, true, &["log", "--app", &app.id, "--id", &id]).unwrap();
            let timed_out = log.as_array().unwrap().iter().any(|a| {
                a["status"].is_null() && a["error"].as_str().unwrap_or("").contains("within")
            });
            if timed_out {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    receiver.set(&key, "ok", 0);
    receiver.until_accepted(&ids, 30).await;
    assert_complete_and_ordered(&receiver, &ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replica_takes_over_when_the_delivering_one_stops() {
    if !can_run("webhooks") {
        return;
    }
    let db = TestDb::create().await;
    // The second replica's port, reserved now: the agent knows both.
    let second_listen = assent_tests::ports::free_address();
    let mut first = TestServer::start_with(&db, fast).await;
    let servers = format!("{},http://{second_listen}", first.url());
    let (app, _agent, _daemon) = accepting_agent(&first, &db, Some(&servers)).await;
    let receiver = Receiver::start().await;
    create_endpoint(&db, &app, &receiver);
    let key = receiver.secret();
    let mut rp = rp_client(&first, &app.api_key).await;
    let mut ids = logins(&mut rp, 2).await;
    receiver.until_accepted(&ids, 20).await;
    // The only replica delivers; hold it mid-delivery, start a second one,
    // stop the first.
    receiver.set(&key, "sleep", 800);
    ids.extend(logins(&mut rp, 2).await);
    // The first has delivered one of the slow ones: it holds the endpoint.
    let before = receiver.deliveries().len();
    until_delivered(&receiver, before + 1, 10).await;
    let second = TestServer::start_with(&db, |config| {
        fast(config);
        config.listen = second_listen;
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.stop().await;
    // The first stopped mid-run: the events of the last two logins were
    // not all delivered yet (the receiver takes 0.8 s a delivery).
    let delivered: HashSet<String> = receiver.deliveries().into_iter().map(|d| d.0).collect();
    let accepted_late = receiver
        .deliveries()
        .into_iter()
        .filter(|d| d.2 == "transaction.accepted" && ids[2..].contains(&d.3))
        .count();
    assert!(
        accepted_late < 2,
        "all delivered before the stop: {delivered:?}"
    );
    receiver.set(&key, "ok", 0);
    let mut rp = rp_client(&second, &app.api_key).await;
    ids.extend(logins(&mut rp, 2).await);
    receiver.until_accepted(&ids, 30).await;
    assert_complete_and_ordered(&receiver, &ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_destination_is_refused_at_creation() {
    let db = TestDb::sqlite();
    let app = TestApp::create(&db, "Example Shop").await;
    for url in [
        "https://10.0.0.1/hook",
        "https://169.254.169.254/latest",
        "https://[fd00::1]/hook",
        "http://127.0.0.1:9/hook",
    ] {
        let error = cli(&db, false, &["create", "--app", &app.id, "--url", url]).unwrap_err();
        assert!(error.contains("webhook_allow_private"), "{url}: {error}");
    }
    let error = cli(
        &db,
        true,
        &[
            "create",
            "--app",
            &app.id,
            "--url",
            "http://192.168.1.1/hook",
        ],
    )
    .unwrap_err();
    assert!(error.contains("https://"), "{error}");
    assert_eq!(
        cli(&db, false, &["list", "--app", &app.id]).unwrap(),
        serde_json::json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_endpoint_gets_nothing_and_resumes_from_its_cursor() {
    if !can_run("webhooks") {
        return;
    }
    let db = TestDb::sqlite();
    let server = TestServer::start_with(&db, fast).await;
    let (app, _agent, _daemon) = accepting_agent(&server, &db, None).await;
    let receiver = Receiver::start().await;
    let id = create_endpoint(&db, &app, &receiver);
    let mut rp = rp_client(&server, &app.api_key).await;
    let mut ids = logins(&mut rp, 2).await;
    receiver.until_accepted(&ids, 20).await;
    let before = receiver.deliveries().len();
    cli(&db, true, &["pause", "--app", &app.id, "--id", &id]).unwrap();
    let listed = cli(&db, true, &["list", "--app", &app.id]).unwrap();
    assert_eq!(listed[0]["paused"], true, "{listed}");
    assert!(
        listed[0]["pause_reason"]
            .as_str()
            .unwrap()
            .contains("operator")
    );
    ids.extend(logins(&mut rp, 2).await);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        receiver.deliveries().len(),
        before,
        "delivered while paused"
    );
    cli(&db, true, &["resume", "--app", &app.id, "--id", &id]).unwrap();
    receiver.until_accepted(&ids, 20).await;
    assert_complete_and_ordered(&receiver, &ids);
    cli(&db, true, &["delete", "--app", &app.id, "--id", &id]).unwrap();
    assert_eq!(
        cli(&db, true, &["list", "--app", &app.id]).unwrap(),
        serde_json::json!([])
    );
}

/// The lease and the log on one engine: one owner at a time, another
/// takes over once the lease ran out (a replica that died), the position
/// moves only for the owner, the log keeps the newest 100.
async fn leases_and_log(db: TestDb) {
    use assent_server::domain::ApplicationId;
    use assent_server::domain::webhook::{WebhookId, WebhookSecret, WebhookUrl};
    use assent_server::store::DeliveryAttempt;
    use chrono::Utc;

    let store = db.store().await;
    let app = TestApp::create(&db, "Example Shop").await;
    let app_id = ApplicationId::parse(&app.id).unwrap();
    let id = WebhookId::random();
    let url = WebhookUrl::parse("https://hooks.example/assent").unwrap();
    let secret = WebhookSecret::generate(&mut assent_server::secure_rng());
    let now = Utc::now();
    store
        .create_webhook(id, app_id, &url, &secret, 0, now)
        .await
        .unwrap();
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let lease = chrono::Duration::seconds(10);
    // No event yet: nothing to claim.
    assert!(
        store
            .claim_webhook(a, now + lease, now)
            .await
            .unwrap()
            .is_none()
    );
    // One event: a login created, by a server whose own worker looks for
    // endpoints only once, at its start (before the event).
    let mut server = TestServer::start_with(&db, |c| c.webhook_poll_ms = 3_600_000).await;
    let mut rp = rp_client(&server, &app.api_key).await;
    rp.create_otp_authentication(assent_proto::v1::CreateOtpAuthenticationRequest {
        message: "Log in?".to_owned(),
        ..Default::default()
    })
    .await
    .unwrap();
    server.stop().await;
    let now = Utc::now();
    let claimed = store.claim_webhook(a, now + lease, now).await.unwrap();
    assert_eq!(claimed.map(|e| e.id), Some(id));
    assert!(
        store
            .claim_webhook(b, now + lease, now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        !store.webhook_delivered(id, b, 1).await.unwrap(),
        "not b's lease"
    );
    // A dies; once its lease ran out, b takes over.
    let later = now + lease + chrono::Duration::seconds(1);
    let taken = store.claim_webhook(b, later + lease, later).await.unwrap();
    assert_eq!(taken.map(|e| e.id), Some(id));
    assert!(
        !store
            .renew_webhook_lease(id, a, later + lease)
            .await
            .unwrap()
    );
    for n in 0..105 {
        let attempt = DeliveryAttempt {
            attempted_at: later,
            event_id: format!("evt_{n}"),
            status: Some(500),
            error: Some("HTTP 500".to_owned()),
            latency_ms: n,
        };
        store.log_webhook_attempt(id, &attempt, 100).await.unwrap();
    }
    let log = store.webhook_log(app_id, id, 1000).await.unwrap();
    assert_eq!(log.len(), 100);
    assert_eq!(log[0].event_id, "evt_104");
    assert_eq!(log[99].event_id, "evt_5");
    // A failure past the limit pauses the endpoint with its reason and
    // gives the lease up; the position stays.
    let failed = assent_server::store::FailedAttempt {
        next_attempt_at: later + chrono::Duration::hours(1),
        at: later,
        pause: Some("failing since yesterday: HTTP 500".to_owned()),
    };
    store.webhook_failed(id, b, &failed).await.unwrap();
    let listed = store.list_webhooks(app_id).await.unwrap();
    let (_, reason) = listed[0].paused.clone().expect("paused");
    assert_eq!(reason, "failing since yesterday: HTTP 500");
    assert_eq!(listed[0].failures, 1);
    assert_eq!(listed[0].delivered_through, 0);
    let much_later = later + chrono::Duration::hours(2);
    let paused = store
        .claim_webhook(a, much_later + lease, much_later)
        .await
        .unwrap();
    assert!(paused.is_none(), "a paused endpoint is not claimed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_holds_an_endpoint_until_its_lease_runs_out_on_sqlite() {
    leases_and_log(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_holds_an_endpoint_until_its_lease_runs_out_on_postgres() {
    leases_and_log(TestDb::create().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_destination_is_refused_again_at_delivery() {
    if !can_run("webhooks") {
        return;
    }
    // Created where private addresses were allowed, delivered by a
    // replica where they are not (as if the name now resolved there).
    let db = TestDb::sqlite();
    let server = TestServer::start_with(&db, |config| {
        fast(config);
        config.webhook_allow_private = false;
    })
    .await;
    let (app, _agent, _daemon) = accepting_agent(&server, &db, None).await;
    let receiver = Receiver::start().await;
    let id = create_endpoint(&db, &app, &receiver);
    let mut rp = rp_client(&server, &app.api_key).await;
    logins(&mut rp, 1).await;
    within(15, "a refused attempt in the delivery log", async {
        loop {
            let log = cli(&db, true, &["log", "--app", &app.id, "--id", &id]).unwrap();
            let refused = log.as_array().unwrap().iter().any(|a| {
                a["status"].is_null()
                    && a["error"]
                        .as_str()
                        .unwrap_or("")
                        .contains("webhook_allow_private")
            });
            if refused {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(receiver.lines().is_empty(), "the receiver was reached");
}

/// A server process on `listen` with quick webhook settings.
fn server_process(db: &TestDb, listen: std::net::SocketAddr) -> Child {
    Command::new(binary("assent-server"))
        .args(["--database-url", &db.url, "serve", "--listen"])
        .arg(listen.to_string())
        .args(["--metrics-listen", "off"])
        .env("ASSENT_WEBHOOK_ALLOW_PRIVATE", "true")
        .env("ASSENT_WEBHOOK_LEASE_MS", "3000")
        .env("ASSENT_WEBHOOK_POLL_MS", "100")
        .env("ASSENT_WEBHOOK_REQUEST_TIMEOUT_MS", "5000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start assent-server")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replica_takes_over_when_the_delivering_one_is_killed() {
    if !can_run("webhooks") {
        return;
    }
    let db = TestDb::create().await;
    let (first_listen, second_listen) = (free_address(), free_address());
    let servers = format!("http://{first_listen},http://{second_listen}");
    // Enrollment on a helper whose own worker never looks again.
    let mut helper = TestServer::start_with(&db, |c| c.webhook_poll_ms = 3_600_000).await;
    let app = TestApp::create(&db, "Example Shop").await;
    let agent = EnrolledAgent::enroll(&helper, &app, "alice").await;
    helper.stop().await;
    let mut first = server_process(&db, first_listen);
    let url = format!("http://{first_listen}");
    within(20, "the server process to serve", async {
        loop {
            let health = Command::new(binary("assent-server"))
                .args(["health", "--url", &url, "--timeout", "1"])
                .output()
                .unwrap();
            if health.status.success() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let _daemon = agent.run(&servers, &["--policy", "accept"]);
    agent.wait_connected().await;
    let receiver = Receiver::start().await;
    create_endpoint(&db, &app, &receiver);
    let key = receiver.secret();
    let mut rp = assent_tests::rp_client_at(&url, &app.api_key).await;
    let mut ids = logins(&mut rp, 2).await;
    receiver.until_accepted(&ids, 20).await;
    // The process delivers slowly now; a second replica starts; the first
    // is killed (SIGKILL: its lease is not given up, it runs out).
    receiver.set(&key, "sleep", 800);
    ids.extend(logins(&mut rp, 2).await);
    // The process has delivered one of the slow ones: it holds the endpoint.
    let before = receiver.deliveries().len();
    until_delivered(&receiver, before + 1, 10).await;
    let second = TestServer::start_with(&db, |config| {
        fast(config);
        config.listen = second_listen;
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = first.kill();
    let _ = first.wait();
    let killed = std::time::Instant::now();
    let accepted_late = receiver
        .deliveries()
        .into_iter()
        .filter(|d| d.2 == "transaction.accepted" && ids[2..].contains(&d.3))
        .count();
    assert!(accepted_late < 2, "all delivered before the kill");
    receiver.set(&key, "ok", 0);
    let mut rp = rp_client(&second, &app.api_key).await;
    ids.extend(logins(&mut rp, 2).await);
    receiver.until_accepted(&ids, 40).await;
    // The second waited for the dead one's lease (renewed before each
    // attempt, 3 s) to run out.
    assert!(
        killed.elapsed() >= Duration::from_millis(1_500),
        "taken over after {:?}, before the lease ran out",
        killed.elapsed()
    );
    assert_complete_and_ordered(&receiver, &ids);
}
