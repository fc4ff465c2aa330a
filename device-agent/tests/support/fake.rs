//! The scripted in-process `DeviceService`: the handshake and the session
//! loop; decisions are verified in `transactions`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use assent_proto::signing;
use assent_proto::v1::device_service_server::{DeviceService, DeviceServiceServer};
use assent_proto::v1::{
    AgentMessage, Cancellation, Challenge, ConfirmationRequest, EnrollRequest, EnrollResponse,
    GoAway, Ready, Rejection, ServerMessage, SignedDecision, TransactionState, agent_message,
    server_message,
};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

pub const DEVICE_ID: &str = "dev-1";
pub(super) const NONCE: [u8; 32] = [9; 32];

#[derive(Default)]
pub struct World {
    pub public_key: Option<VerifyingKey>,
    pub revoked: bool,
    pub(super) transactions: HashMap<String, Tx>,
    pub connects: usize,
    pub drop_after_next_submit: bool,
    pub drop_after_next_decision: bool,
    /// Leave the next decision unanswered: send a Cancellation with this
    /// reason instead, then drop the stream.
    pub cancel_next_decision: Option<String>,
    pub cancel_after_confirmation: bool,
    pub go_away_once: bool,
    pub decisions_received: usize,
    /// Every decision received, in order.
    pub decisions: Vec<SignedDecision>,
    /// The current session: its sender (weak, so that the stream ends with
    /// the session) and the token that ends it.
    pub(super) live: Option<(
        mpsc::WeakSender<Result<ServerMessage, Status>>,
        CancellationToken,
    )>,
}

#[derive(Default)]
pub(super) struct Tx {
    pub(super) secret: Vec<u8>,
    /// The confirmation request, once scanned (OTP) or created (push).
    pub(super) scanned: Option<ConfirmationRequest>,
    /// The number the login page shows under number matching.
    pub(super) match_number: Option<u32>,
    pub(super) outcome: Option<(TransactionState, String)>,
}

#[derive(Clone, Default)]
pub struct Fake(pub Arc<Mutex<World>>);

pub(super) type Outbound = mpsc::Sender<Result<ServerMessage, Status>>;

pub(super) async fn send(out: &Outbound, body: server_message::Body) {
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
        let kick = CancellationToken::new();
        let pending: Vec<_> = {
            let mut world = self.0.lock().unwrap();
            world.live = Some((out.downgrade(), kick.clone()));
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
        loop {
            let message = tokio::select! {
                message = inbound.message() => message,
                () = kick.cancelled() => return,
            };
            let Ok(Some(AgentMessage { body: Some(body) })) = message else {
                return;
            };
            match body {
                agent_message::Body::SubmitOtp(submit) => {
                    if !self.submit(submit.request_id, &submit.otp, &out).await {
                        return;
                    }
                }
                agent_message::Body::Decision(decision) => {
                    let cancel_instead = {
                        let mut world = self.0.lock().unwrap();
                        world.decisions_received += 1;
                        world.decisions.push(decision.clone());
                        if std::mem::take(&mut world.drop_after_next_decision) {
                            return;
                        }
                        world.cancel_next_decision.take()
                    };
                    if let Some(reason) = cancel_instead {
                        let cancellation = self.cancelled(&decision.transaction_id, &reason);
                        send(&out, server_message::Body::Cancellation(cancellation)).await;
                        return;
                    }
                    let reply = self.decide(&decision, &key);
                    send(&out, reply).await;
                }
                agent_message::Body::Hello(_) | agent_message::Body::Unenroll(_) => return,
            }
        }
    }

    /// Answers a SubmitOtp; false to drop the stream.
    async fn submit(&self, request_id: u64, otp: &str, out: &Outbound) -> bool {
        let reply = {
            let mut world = self.0.lock().unwrap();
            let drop_stream = std::mem::take(&mut world.drop_after_next_submit);
            let cancel = world.cancel_after_confirmation;
            match world.scan(request_id, otp) {
                Some(request) => {
                    if drop_stream {
                        return false;
                    }
                    Some((request, cancel))
                }
                None => None,
            }
        };
        match reply {
            Some((request, cancel)) => {
                let transaction_id = request.transaction_id.clone();
                send(out, server_message::Body::ConfirmationRequest(request)).await;
                if cancel {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let cancellation = self.cancelled(&transaction_id, "cancelled");
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

    /// Ends the transaction as cancelled; the message telling the device.
    pub(super) fn cancelled(&self, transaction_id: &str, reason: &str) -> Cancellation {
        let mut world = self.0.lock().unwrap();
        if let Some(tx) = world.transactions.get_mut(transaction_id) {
            tx.outcome = Some((TransactionState::Cancelled, reason.into()));
        }
        Cancellation {
            transaction_id: transaction_id.into(),
            reason: reason.into(),
        }
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
