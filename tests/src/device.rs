//! A scriptable device that speaks the raw `DeviceService` protocol, so tests
//! can race, forge and replay what a real agent never would.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use assent_proto::signing::{self, DecisionPayload, SignedVerdict};
use assent_proto::v1::device_service_client::DeviceServiceClient;
use assent_proto::v1::server_message::Body;
use assent_proto::v1::{
    AgentMessage, ConfirmationRequest, CreateEnrollmentRequest, EnrollRequest, Hello,
    SignedDecision, SubmitOtp, agent_message,
};
use ed25519_dalek::{Signer, SigningKey};
use rand::RngCore;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::harness::{TestApp, TestServer, rp_client};

/// An enrolled device key.
pub struct TestDevice {
    /// The private key.
    pub key: SigningKey,
    /// Server-assigned id.
    pub device_id: String,
    /// Its user.
    pub user_id: String,
    /// Its application.
    pub application_id: String,
}

impl TestDevice {
    /// Creates an enrollment code for `user` and enrolls a fresh key with it.
    pub async fn enroll(server: &TestServer, app: &TestApp, user: &str) -> Self {
        let mut rp = rp_client(server, &app.api_key).await;
        let code = rp
            .create_enrollment(CreateEnrollmentRequest {
                user_id: user.to_owned(),
                ttl_seconds: 0,
            })
            .await
            .expect("create enrollment")
            .into_inner()
            .code;
        Self::enroll_with_code(server, &code).await.expect("enroll")
    }

    /// Enrolls a fresh key with an existing code.
    pub async fn enroll_with_code(server: &TestServer, code: &str) -> Result<Self, Status> {
        Self::enroll_named(server, code, "test device").await
    }

    /// Enrolls a fresh key named `name` with an existing code.
    pub async fn enroll_named(server: &TestServer, code: &str, name: &str) -> Result<Self, Status> {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let key = SigningKey::from_bytes(&seed);
        let public_key = key.verifying_key().to_bytes().to_vec();
        let proof = key.sign(&signing::enroll_bytes(code, &public_key, name));
        let response = DeviceServiceClient::new(server.channel().await)
            .enroll(EnrollRequest {
                code: code.to_owned(),
                public_key,
                device_name: name.to_owned(),
                proof: proof.to_bytes().to_vec(),
            })
            .await?
            .into_inner();
        Ok(Self {
            key,
            device_id: response.device_id,
            user_id: response.user_id,
            application_id: response.application_id,
        })
    }

    /// Opens `Connect`, answers the challenge and waits for Ready.
    pub async fn connect(&self, server: &TestServer) -> Result<DeviceStream, Status> {
        self.connect_on(server.channel().await).await
    }

    /// Like [`TestDevice::connect`], over a channel the test configured.
    pub async fn connect_on(
        &self,
        channel: tonic::transport::Channel,
    ) -> Result<DeviceStream, Status> {
        let (sender, receiver) = mpsc::channel(16);
        let mut inbound = DeviceServiceClient::new(channel)
            .connect(ReceiverStream::new(receiver))
            .await?
            .into_inner();
        let Some(Body::Challenge(challenge)) = next_body(&mut inbound).await? else {
            panic!("the server must speak first with a Challenge");
        };
        let signature = self
            .key
            .sign(&signing::hello_bytes(&self.device_id, &challenge.nonce));
        let hello = agent_message::Body::Hello(Hello {
            device_id: self.device_id.clone(),
            signature: signature.to_bytes().to_vec(),
        });
        sender
            .send(AgentMessage { body: Some(hello) })
            .await
            .expect("send hello");
        match next_body(&mut inbound).await? {
            Some(Body::Ready(_)) => Ok(DeviceStream {
                sender,
                inbound,
                next_request: 1,
            }),
            other => panic!("expected Ready, got {other:?}"),
        }
    }

    /// A correctly signed decision on `request`.
    pub fn decision(
        &self,
        request: &ConfirmationRequest,
        verdict: SignedVerdict,
        reason: &str,
    ) -> SignedDecision {
        self.decision_with_number(request, verdict, reason, None)
    }

    /// A correctly signed decision that picks `number` under number matching.
    pub fn decision_with_number(
        &self,
        request: &ConfirmationRequest,
        verdict: SignedVerdict,
        reason: &str,
        number: Option<u32>,
    ) -> SignedDecision {
        let bytes = signing::decision_bytes(&DecisionPayload {
            application_id: &request.application_id,
            transaction_id: &request.transaction_id,
            device_id: &self.device_id,
            nonce: &request.nonce,
            verdict,
            reason,
            display_hash: &signing::display_hash(&request.message, &request.context),
            number,
        });
        SignedDecision {
            transaction_id: request.transaction_id.clone(),
            decision: match verdict {
                SignedVerdict::Accept => assent_proto::v1::Decision::Accept.into(),
                SignedVerdict::Deny => assent_proto::v1::Decision::Deny.into(),
            },
            reason: reason.to_owned(),
            signature: self.key.sign(&bytes).to_bytes().to_vec(),
            number: number.unwrap_or_default(),
        }
    }
}

async fn next_body(
    inbound: &mut Streaming<assent_proto::v1::ServerMessage>,
) -> Result<Option<Body>, Status> {
    match tokio::time::timeout(Duration::from_secs(10), inbound.message()).await {
        Ok(Ok(Some(message))) => Ok(message.body),
        Ok(Ok(None)) => Ok(None),
        Ok(Err(status)) => Err(status),
        Err(_) => panic!("no server message within 10 s"),
    }
}

/// An authenticated `Connect` stream.
pub struct DeviceStream {
    sender: mpsc::Sender<AgentMessage>,
    inbound: Streaming<assent_proto::v1::ServerMessage>,
    next_request: u64,
}

impl DeviceStream {
    /// The next server message body (`Ok(None)` when the stream ended cleanly).
    pub async fn next(&mut self) -> Result<Option<Body>, Status> {
        next_body(&mut self.inbound).await
    }

    /// Sends a raw agent message.
    pub async fn send(&self, body: agent_message::Body) {
        self.sender
            .send(AgentMessage { body: Some(body) })
            .await
            .expect("stream open");
    }

    /// Sends a raw agent message if the stream is still open; whether it was.
    pub async fn offer(&self, body: agent_message::Body) -> bool {
        self.sender
            .send(AgentMessage { body: Some(body) })
            .await
            .is_ok()
    }

    /// Submits an OTP and returns the server's answer.
    pub async fn submit(&mut self, otp: &str) -> Body {
        let request_id = self.next_request;
        self.next_request += 1;
        self.send(agent_message::Body::SubmitOtp(SubmitOtp {
            request_id,
            otp: otp.to_owned(),
        }))
        .await;
        self.next()
            .await
            .expect("stream alive")
            .expect("an answer to SubmitOtp")
    }

    /// Submits an OTP that must be accepted and returns the confirmation request.
    pub async fn scan(&mut self, otp: &str) -> ConfirmationRequest {
        match self.submit(otp).await {
            Body::ConfirmationRequest(request) => request,
            other => panic!("expected a confirmation request, got {other:?}"),
        }
    }

    /// Sends a decision and returns the server's answer.
    pub async fn decide(&mut self, decision: SignedDecision) -> Body {
        self.send(agent_message::Body::Decision(decision)).await;
        self.next()
            .await
            .expect("stream alive")
            .expect("an answer to the decision")
    }
}
