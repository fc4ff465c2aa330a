//! The daemon against a scripted in-process `DeviceService`: enrollment,
//! the signed handshake, OTP outcomes, reconnects and cancellations.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use assent_agent::{AgentConfig, AgentError, OtpOutcome, Policy};
use assent_proto::signing::{self, DecisionPayload, SignedVerdict};
use assent_proto::v1::device_service_server::{DeviceService, DeviceServiceServer};
use assent_proto::v1::{
    AgentMessage, Cancellation, Challenge, ConfirmationRequest, DecisionResult, EnrollRequest,
    EnrollResponse, Ready, Rejection, ServerMessage, TransactionState, agent_message,
    server_message,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

const DEVICE_ID: &str = "dev-1";
const NONCE: [u8; 32] = [9; 32];

#[derive(Default)]
struct World {
    public_key: Option<VerifyingKey>,
    revoked: bool,
    /// Transaction id → (secret, confirmation once scanned, outcome once decided).
    transactions: HashMap<String, Tx>,
    connects: usize,
    drop_after_next_submit: bool,
    drop_after_next_decision: bool,
    cancel_after_confirmation: bool,
    decisions_received: usize,
}

#[derive(Default)]
struct Tx {
    secret: Vec<u8>,
    scanned: Option<ConfirmationRequest>,
    outcome: Option<(TransactionState, String)>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<World>>);

type Outbound = mpsc::Sender<Result<ServerMessage, Status>>;

async fn send(out: &Outbound, body: server_message::Body) {
    let _ = out.send(Ok(ServerMessage { body: Some(body) })).await;
}

#[tonic::async_trait]
impl DeviceService for Fake {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let request = request.into_inner();
        let key =
            VerifyingKey::from_bytes(&request.public_key.clone().try_into().unwrap()).unwrap();
        let proof = Signature::from_slice(&request.proof).unwrap();
        let bytes = signing::enroll_bytes(&request.code, &request.public_key, &request.device_name);
        key.verify(&bytes, &proof)
            .map_err(|_| Status::unauthenticated("bad proof"))?;
        if request.code != "good-code" {
            return Err(Status::not_found("unknown enrollment code"));
        }
        self.0.lock().unwrap().public_key = Some(key);
        Ok(Response::new(EnrollResponse {
            device_id: DEVICE_ID.into(),
            user_id: "alice".into(),
            application_id: "app-1".into(),
            application_name: "Example Shop".into(),
        }))
    }

    type ConnectStream = ReceiverStream<Result<ServerMessage, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let (out, receiver) = mpsc::channel(16);
        tokio::spawn(self.clone().session(request.into_inner(), out));
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

impl Fake {
    fn with(self, edit: impl FnOnce(&mut World)) -> Self {
        edit(&mut self.0.lock().unwrap());
        self
    }

    async fn session(self, mut inbound: Streaming<AgentMessage>, out: Outbound) {
        send(
            &out,
            server_message::Body::Challenge(Challenge {
                nonce: NONCE.to_vec(),
            }),
        )
        .await;
        let Ok(Some(AgentMessage {
            body: Some(agent_message::Body::Hello(hello)),
        })) = inbound.message().await
        else {
            return;
        };
        let (key, revoked) = {
            let mut world = self.0.lock().unwrap();
            world.connects += 1;
            (world.public_key.unwrap(), world.revoked)
        };
        let signature = Signature::from_slice(&hello.signature).unwrap();
        if key
            .verify(&signing::hello_bytes(&hello.device_id, &NONCE), &signature)
            .is_err()
        {
            let _ = out
                .send(Err(Status::unauthenticated("bad signature")))
                .await;
            return;
        }
        if revoked {
            let _ = out
                .send(Err(Status::permission_denied("device revoked")))
                .await;
            return;
        }
        let ready = Ready {
            device_id: DEVICE_ID.into(),
            user_id: "alice".into(),
            application_name: "Example Shop".into(),
        };
        send(&out, server_message::Body::Ready(ready)).await;
        let pending: Vec<_> = {
            let world = self.0.lock().unwrap();
            world
                .transactions
                .values()
                .filter(|tx| tx.outcome.is_none())
                .filter_map(|tx| tx.scanned.clone())
                .collect()
        };
        for mut request in pending {
            request.request_id = 0;
            send(&out, server_message::Body::ConfirmationRequest(request)).await;
        }
        while let Ok(Some(AgentMessage { body: Some(body) })) = inbound.message().await {
            match body {
                agent_message::Body::SubmitOtp(submit) => {
                    if !self.submit(submit.request_id, &submit.otp, &out).await {
                        return;
                    }
                }
                agent_message::Body::Decision(decision) => {
                    {
                        let mut world = self.0.lock().unwrap();
                        world.decisions_received += 1;
                        if std::mem::take(&mut world.drop_after_next_decision) {
                            return;
                        }
                    }
                    let reply = self.decide(&decision, &key);
                    send(&out, reply).await;
                }
                agent_message::Body::Hello(_) => return,
            }
        }
    }

    /// Answers a SubmitOtp; false to drop the stream.
    async fn submit(&self, request_id: u64, otp: &str, out: &Outbound) -> bool {
        let bytes = STANDARD
            .decode(otp)
            .or_else(|_| URL_SAFE_NO_PAD.decode(otp))
            .unwrap_or_default();
        let reply = {
            let mut world = self.0.lock().unwrap();
            let drop_stream = std::mem::take(&mut world.drop_after_next_submit);
            let cancel = world.cancel_after_confirmation;
            let id = (bytes.len() == 48)
                .then(|| uuid::Uuid::from_slice(&bytes[..16]).unwrap().to_string());
            match id.and_then(|id| world.transactions.get_mut(&id).map(|tx| (id, tx))) {
                Some((id, tx)) if tx.secret == bytes[16..] && tx.scanned.is_none() => {
                    let request = ConfirmationRequest {
                        request_id,
                        transaction_id: id.clone(),
                        application_id: "app-1".into(),
                        application_name: "Example Shop".into(),
                        message: "Sign in from Firefox".into(),
                        context: BTreeMap::from([("ip".into(), "192.0.2.1".into())]),
                        expires_at: Some(prost_types::Timestamp {
                            seconds: chrono::Utc::now().timestamp() + 60,
                            nanos: 0,
                        }),
                        nonce: NONCE.to_vec(),
                        user_id: "alice".into(),
                    };
                    tx.scanned = Some(request.clone());
                    if drop_stream {
                        return false;
                    }
                    if cancel {
                        tx.outcome = Some((TransactionState::Cancelled, "cancelled".into()));
                    }
                    Some((request, cancel.then_some(id)))
                }
                _ => None,
            }
        };
        match reply {
            Some((request, cancel)) => {
                send(out, server_message::Body::ConfirmationRequest(request)).await;
                if let Some(transaction_id) = cancel {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let cancellation = Cancellation {
                        transaction_id,
                        reason: "cancelled".into(),
                    };
                    send(out, server_message::Body::Cancellation(cancellation)).await;
                }
            }
            None => {
                let rejection = Rejection {
                    request_id,
                    code: 5,
                    message: "unknown OTP".into(),
                    ..Default::default()
                };
                send(out, server_message::Body::Rejection(rejection)).await;
            }
        }
        true
    }

    fn decide(
        &self,
        decision: &assent_proto::v1::SignedDecision,
        key: &VerifyingKey,
    ) -> server_message::Body {
        let mut world = self.0.lock().unwrap();
        let tx = world
            .transactions
            .get_mut(&decision.transaction_id)
            .unwrap();
        let request = tx.scanned.clone().unwrap();
        let accept = decision.decision == 1;
        let hash = signing::display_hash(&request.message, &request.context);
        let bytes = signing::decision_bytes(&DecisionPayload {
            application_id: &request.application_id,
            transaction_id: &request.transaction_id,
            device_id: DEVICE_ID,
            nonce: &request.nonce,
            verdict: if accept {
                SignedVerdict::Accept
            } else {
                SignedVerdict::Deny
            },
            reason: &decision.reason,
            display_hash: &hash,
        });
        let signature = Signature::from_slice(&decision.signature).unwrap();
        if key.verify(&bytes, &signature).is_err() {
            return server_message::Body::Rejection(Rejection {
                transaction_id: decision.transaction_id.clone(),
                code: 16,
                message: "bad signature".into(),
                ..Default::default()
            });
        }
        let applied = tx.outcome.is_none();
        let state = if accept {
            TransactionState::Accepted
        } else {
            TransactionState::Denied
        };
        let (state, reason) = tx
            .outcome
            .get_or_insert((state, decision.reason.clone()))
            .clone();
        server_message::Body::DecisionResult(DecisionResult {
            transaction_id: decision.transaction_id.clone(),
            state: state.into(),
            reason,
            applied,
        })
    }

    /// A fresh OTP for a new transaction (base64url without padding).
    fn new_otp(&self) -> (String, String) {
        let id = uuid::Uuid::new_v4();
        let secret: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
        let mut bytes = id.as_bytes().to_vec();
        bytes.extend(&secret);
        let tx = Tx {
            secret,
            ..Default::default()
        };
        self.0
            .lock()
            .unwrap()
            .transactions
            .insert(id.to_string(), tx);
        (URL_SAFE_NO_PAD.encode(bytes), id.to_string())
    }

    async fn serve_on(self, listener: TcpListener, stop: CancellationToken) {
        tonic::transport::Server::builder()
            .add_service(DeviceServiceServer::new(self))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled_owned())
            .await
            .unwrap();
    }

    async fn start(self) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(self.serve_on(listener, stop.clone()));
        (addr, stop)
    }
}

struct Agent {
    dir: tempfile::TempDir,
    shutdown: CancellationToken,
    daemon: tokio::task::JoinHandle<Result<(), AgentError>>,
}

impl Agent {
    /// Enrolls against `fake` and starts a daemon with `policy` on `server`.
    async fn start(fake: &Fake, server: Option<SocketAddr>, policy: Policy) -> Agent {
        let (enroll_addr, stop) = fake.clone().start().await;
        let dir = tempfile::tempdir().unwrap();
        let config = AgentConfig::new(
            dir.path().join("state"),
            format!("http://{enroll_addr}"),
            policy.clone(),
        );
        let enrollment = assent_agent::enroll(&config, "good-code", "test device", false)
            .await
            .unwrap();
        assert_eq!(enrollment.device_id, DEVICE_ID);
        // Without a given address the daemon talks to the enrolling server.
        let server = match server {
            Some(server) => {
                stop.cancel();
                server
            }
            None => enroll_addr,
        };
        let config = AgentConfig::new(dir.path().join("state"), format!("http://{server}"), policy);
        let shutdown = CancellationToken::new();
        let daemon = tokio::spawn(assent_agent::run(config, shutdown.clone()));
        let agent = Agent {
            dir,
            shutdown,
            daemon,
        };
        for _ in 0..100 {
            if agent.socket().exists() {
                return agent;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the control socket never appeared");
    }

    fn state(&self) -> std::path::PathBuf {
        self.dir.path().join("state")
    }

    fn socket(&self) -> std::path::PathBuf {
        self.state().join("agent.sock")
    }

    async fn otp(&self, otp: &str) -> OtpOutcome {
        assent_agent::submit_otp(&self.state(), otp, Duration::from_secs(20))
            .await
            .unwrap()
    }

    async fn stop(self) {
        let socket = self.socket();
        self.shutdown.cancel();
        self.daemon.await.unwrap().unwrap();
        assert!(!socket.exists(), "the socket is removed at shutdown");
    }
}

async fn serve(fake: &Fake) -> SocketAddr {
    fake.clone().start().await.0
}

#[tokio::test]
async fn enroll_saves_a_private_profile_and_refuses_a_second_time() {
    let fake = Fake::default();
    let addr = serve(&fake).await;
    let dir = tempfile::tempdir().unwrap();
    let config = AgentConfig::new(
        dir.path().to_owned(),
        format!("http://{addr}"),
        Policy::Deny,
    );
    let bad = assent_agent::enroll(&config, "bad-code", "laptop", false).await;
    assert!(
        matches!(
            bad,
            Err(AgentError::EnrollmentRefused {
                code: tonic::Code::NotFound,
                ..
            })
        ),
        "{bad:?}"
    );
    assent_agent::enroll(&config, "good-code", "laptop", false)
        .await
        .unwrap();
    let profile = assent_agent::credentials::load_profile(dir.path())
        .unwrap()
        .unwrap();
    assert_eq!(profile.application_name, "Example Shop");
    let again = assent_agent::enroll(&config, "good-code", "laptop", false).await;
    assert!(matches!(again, Err(AgentError::AlreadyEnrolled { .. })));
}

#[tokio::test]
async fn an_accepted_login_is_reported_ok() {
    let fake = Fake::default();
    let agent = Agent::start(&fake, None, Policy::Accept).await;
    let (otp, id) = fake.new_otp();
    let outcome = agent.otp(&otp).await;
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(outcome.state.as_deref(), Some("ACCEPTED"));
    assert_eq!(outcome.transaction_id.as_deref(), Some(id.as_str()));
    let status = assent_agent::daemon_status(&agent.state(), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(status.connected);
    assert_eq!(status.policy, "accept");
    agent.stop().await;
}

#[tokio::test]
async fn the_deny_policy_denies_with_reason_policy() {
    let fake = Fake::default();
    let agent = Agent::start(&fake, None, Policy::Deny).await;
    let (otp, _) = fake.new_otp();
    let outcome = agent.otp(&otp).await;
    assert!(!outcome.ok);
    assert_eq!(outcome.state.as_deref(), Some("DENIED"));
    assert_eq!(outcome.reason.as_deref(), Some("policy"));
    agent.stop().await;
}

#[tokio::test]
async fn unknown_and_malformed_otps_are_errors() {
    let fake = Fake::default();
    let agent = Agent::start(&fake, None, Policy::Accept).await;
    let unknown = STANDARD.encode([1u8; 48]);
    let outcome = agent.otp(&unknown).await;
    assert!(outcome.error.unwrap().contains("invalid OTP"));
    let outcome = agent.otp("not-an-otp").await;
    assert_eq!(outcome.error.as_deref(), Some("invalid OTP (malformed)"));
    let (otp, _) = fake.new_otp();
    assert!(agent.otp(&otp).await.ok);
    let reused = agent.otp(&otp).await;
    assert!(!reused.ok && reused.error.unwrap().contains("invalid OTP"));
    agent.stop().await;
}

#[tokio::test]
async fn an_otp_waits_for_the_server_to_come_up() {
    let fake = Fake::default();
    let reserved = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let agent = Agent::start(&fake, Some(addr), Policy::Accept).await;
    let (otp, _) = fake.new_otp();
    let state = agent.state();
    let waiting = tokio::spawn(async move {
        assent_agent::submit_otp(&state, &otp, Duration::from_secs(30)).await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let status = assent_agent::daemon_status(&agent.state(), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(!status.connected);
    let stop = CancellationToken::new();
    tokio::spawn(
        fake.clone()
            .serve_on(TcpListener::bind(addr).await.unwrap(), stop.clone()),
    );
    let outcome = waiting.await.unwrap().unwrap();
    assert!(outcome.ok, "{outcome:?}");
    agent.stop().await;
}

#[tokio::test]
async fn a_scan_lost_in_a_reconnect_is_completed_once() {
    let fake = Fake::default().with(|world| world.drop_after_next_submit = true);
    let agent = Agent::start(&fake, None, Policy::Accept).await;
    let (otp, _) = fake.new_otp();
    let outcome = agent.otp(&otp).await;
    assert!(outcome.ok, "{outcome:?}");
    let (connects, decisions) = {
        let world = fake.0.lock().unwrap();
        (world.connects, world.decisions_received)
    };
    assert!(connects >= 2);
    assert_eq!(decisions, 1, "decided once despite the resubmission");
    agent.stop().await;
}

#[tokio::test]
async fn a_cancellation_stops_the_exec_policy_and_is_reported() {
    let fake = Fake::default().with(|world| world.cancel_after_confirmation = true);
    let agent = Agent::start(&fake, None, Policy::Exec("sleep 30".into())).await;
    let (otp, _) = fake.new_otp();
    let started = std::time::Instant::now();
    let outcome = agent.otp(&otp).await;
    assert_eq!(outcome.state.as_deref(), Some("CANCELLED"));
    assert_eq!(outcome.reason.as_deref(), Some("cancelled"));
    assert!(started.elapsed() < Duration::from_secs(5));
    agent.stop().await;
}

#[tokio::test]
async fn a_revoked_device_fails_waiting_callers() {
    let fake = Fake::default().with(|world| world.drop_after_next_submit = true);
    let agent = Agent::start(&fake, None, Policy::Accept).await;
    fake.0.lock().unwrap().revoked = true;
    // The stream drops after the OTP; the reconnect is refused.
    let (otp, _) = fake.new_otp();
    let outcome = agent.otp(&otp).await;
    let error = outcome.error.unwrap_or_default();
    assert!(error.contains("device revoked"), "{error}");
    agent.stop().await;
}

#[tokio::test]
async fn an_unacknowledged_decision_is_resent_without_deciding_again() {
    let fake = Fake::default().with(|world| world.drop_after_next_decision = true);
    let runs = tempfile::NamedTempFile::new().unwrap();
    let command = format!("echo run >> '{}'", runs.path().display());
    let agent = Agent::start(&fake, None, Policy::Exec(command)).await;
    let (otp, _) = fake.new_otp();
    let outcome = agent.otp(&otp).await;
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(
        fake.0.lock().unwrap().decisions_received,
        2,
        "sent, then re-sent"
    );
    let runs = std::fs::read_to_string(runs.path()).unwrap();
    assert_eq!(runs.lines().count(), 1, "the policy ran once");
    agent.stop().await;
}

#[tokio::test]
async fn a_second_daemon_on_the_same_state_dir_is_refused() {
    let fake = Fake::default();
    let agent = Agent::start(&fake, None, Policy::Accept).await;
    let config = AgentConfig::new(agent.state(), "http://127.0.0.1:9".into(), Policy::Accept);
    let second = assent_agent::run(config, CancellationToken::new()).await;
    assert!(
        matches!(second, Err(AgentError::AlreadyRunning { .. })),
        "{second:?}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_caller_that_times_out_while_disconnected_hears_unreachable() {
    let fake = Fake::default();
    let agent = Agent::start(&fake, Some("127.0.0.1:9".parse().unwrap()), Policy::Accept).await;
    let (otp, _) = fake.new_otp();
    let result = assent_agent::submit_otp(&agent.state(), &otp, Duration::from_millis(500)).await;
    assert!(
        matches!(result, Err(AgentError::ServerUnreachable { .. })),
        "{result:?}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn the_binary_hands_in_otps_and_stops_cleanly_on_sigterm() {
    let fake = Fake::default();
    let addr = serve(&fake).await;
    let dir = tempfile::tempdir().unwrap();
    let config = AgentConfig::new(
        dir.path().to_owned(),
        format!("http://{addr}"),
        Policy::Accept,
    );
    assent_agent::enroll(&config, "good-code", "laptop", false)
        .await
        .unwrap();
    let binary = env!("CARGO_BIN_EXE_assent-agent");
    // The server comes from the enrollment: no --server here.
    let mut daemon = tokio::process::Command::new(binary)
        .args(["run", "--policy", "accept"])
        .env("ASSENT_AGENT_DIR", dir.path())
        .env_remove("ASSENT_SERVER")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let socket = dir.path().join("agent.sock");
    while !socket.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (otp, _) = fake.new_otp();
    let output = tokio::process::Command::new(binary)
        .args(["otp", &otp])
        .env("ASSENT_AGENT_DIR", dir.path())
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "accepted: logged in to Example Shop"
    );
    let output = tokio::process::Command::new(binary)
        .args(["status", "--json"])
        .env("ASSENT_AGENT_DIR", dir.path())
        .output()
        .await
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["running"], true);
    assert_eq!(status["connected"], true);
    assert_eq!(status["device_id"], DEVICE_ID);

    let pid = daemon.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), daemon.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(!socket.exists());
}
