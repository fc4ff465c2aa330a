//! A scripted in-process `DeviceService` (the fake server) and a handle on
//! an enrolled, running agent daemon, shared by the daemon tests.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use assent_agent::{AgentConfig, AgentError, OtpOutcome, Policy};
use assent_proto::signing::{self, DecisionPayload, SignedVerdict};
use assent_proto::v1::device_service_server::{DeviceService, DeviceServiceServer};
use assent_proto::v1::{
    AgentMessage, Cancellation, Challenge, ConfirmationRequest, DecisionResult, EnrollRequest,
    EnrollResponse, GoAway, Ready, Rejection, ServerMessage, TransactionKind, TransactionState,
    agent_message, server_message,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

pub const DEVICE_ID: &str = "dev-1";
const NONCE: [u8; 32] = [9; 32];

#[derive(Default)]
pub struct World {
    pub public_key: Option<VerifyingKey>,
    pub revoked: bool,
    /// Transaction id → (secret, confirmation once scanned, outcome once decided).
    transactions: HashMap<String, Tx>,
    pub connects: usize,
    pub drop_after_next_submit: bool,
    pub drop_after_next_decision: bool,
    pub cancel_after_confirmation: bool,
    pub go_away_once: bool,
    pub decisions_received: usize,
}

#[derive(Default)]
struct Tx {
    secret: Vec<u8>,
    scanned: Option<ConfirmationRequest>,
    outcome: Option<(TransactionState, String)>,
}

#[derive(Clone, Default)]
pub struct Fake(pub Arc<Mutex<World>>);

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
    pub fn with(self, edit: impl FnOnce(&mut World)) -> Self {
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
        if std::mem::take(&mut self.0.lock().unwrap().go_away_once) {
            let go_away = GoAway {
                reconnect_after_ms: 200,
            };
            send(&out, server_message::Body::GoAway(go_away)).await;
            return;
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
                        kind: TransactionKind::Otp.into(),
                        number_choices: Vec::new(),
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
            number: None,
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
    pub fn new_otp(&self) -> (String, String) {
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

    pub async fn serve_on(self, listener: TcpListener, stop: CancellationToken) {
        tonic::transport::Server::builder()
            .add_service(DeviceServiceServer::new(self))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop.cancelled_owned())
            .await
            .unwrap();
    }

    pub async fn start(self) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(self.serve_on(listener, stop.clone()));
        (addr, stop)
    }
}

pub struct Agent {
    dir: tempfile::TempDir,
    shutdown: CancellationToken,
    daemon: tokio::task::JoinHandle<Result<(), AgentError>>,
}

impl Agent {
    /// Enrolls against `fake` and starts a daemon with `policy` on `server`.
    pub async fn start(fake: &Fake, server: Option<SocketAddr>, policy: Policy) -> Agent {
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

    pub fn state(&self) -> std::path::PathBuf {
        self.dir.path().join("state")
    }

    pub fn socket(&self) -> std::path::PathBuf {
        self.state().join("agent.sock")
    }

    pub async fn otp(&self, otp: &str) -> OtpOutcome {
        assent_agent::submit_otp(&self.state(), otp, Duration::from_secs(20))
            .await
            .unwrap()
    }

    pub async fn stop(self) {
        let socket = self.socket();
        self.shutdown.cancel();
        self.daemon.await.unwrap().unwrap();
        assert!(!socket.exists(), "the socket is removed at shutdown");
    }
}

pub async fn serve(fake: &Fake) -> SocketAddr {
    fake.clone().start().await.0
}
