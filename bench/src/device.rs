//! Simulated devices: real Ed25519 keys enrolled through `CreateEnrollment`
//! and `Enroll`, real `Connect` streams (challenge → signed hello → Ready),
//! and real signed decisions.

use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use assent_proto::signing::{self, DecisionPayload, SignedVerdict};
use assent_proto::v1::device_service_client::DeviceServiceClient;
use assent_proto::v1::server_message::Body;
use assent_proto::v1::{
    AgentMessage, ConfirmationRequest, CreateEnrollmentRequest, Decision, EnrollRequest, Hello,
    ServerMessage, SignedDecision, agent_message,
};
use ed25519_dalek::{Signer, SigningKey};
use futures::{StreamExt, TryStreamExt};
use rand::RngCore;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

use crate::client::{self, RpClient};

/// How long one step of the device protocol may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams multiplexed over one connection for `flows` and `push` devices
/// (the server allows 128).
pub const STREAMS_PER_CHANNEL: usize = 64;

/// An enrolled device key.
pub struct SimDevice {
    key: SigningKey,
    /// Server-assigned id.
    pub device_id: String,
    /// Its user.
    pub user_id: String,
    /// Its application.
    pub application_id: String,
}

/// An authenticated `Connect` stream.
pub struct AgentStream {
    sender: mpsc::Sender<AgentMessage>,
    inbound: Streaming<ServerMessage>,
}

impl SimDevice {
    /// Creates an enrollment code for `user` and enrolls a fresh key with it.
    pub async fn enroll(rp: &mut RpClient, channel: Channel, user: String) -> anyhow::Result<Self> {
        let code = rp
            .create_enrollment(CreateEnrollmentRequest {
                user_id: user,
                ttl_seconds: 0,
            })
            .await
            .context("CreateEnrollment")?
            .into_inner()
            .code;
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let key = SigningKey::from_bytes(&seed);
        let public_key = key.verifying_key().to_bytes().to_vec();
        let name = "bench device";
        let proof = key.sign(&signing::enroll_bytes(&code, &public_key, name));
        let enrolled = DeviceServiceClient::new(channel)
            .enroll(EnrollRequest {
                code,
                public_key,
                device_name: name.to_owned(),
                proof: proof.to_bytes().to_vec(),
            })
            .await
            .context("Enroll")?
            .into_inner();
        Ok(Self {
            key,
            device_id: enrolled.device_id,
            user_id: enrolled.user_id,
            application_id: enrolled.application_id,
        })
    }

    /// A key that was never enrolled, for the bare transport baseline.
    pub fn unenrolled(i: usize) -> Self {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        Self {
            key: SigningKey::from_bytes(&seed),
            device_id: format!("bare-{i}"),
            user_id: "bare".to_owned(),
            application_id: String::new(),
        }
    }

    /// Opens `Connect` on `channel`, signs the challenge and waits for Ready.
    pub async fn connect(&self, channel: Channel) -> anyhow::Result<AgentStream> {
        let (sender, receiver) = mpsc::channel(8);
        let inbound = tokio::time::timeout(
            STEP_TIMEOUT,
            DeviceServiceClient::new(channel).connect(ReceiverStream::new(receiver)),
        )
        .await
        .context("Connect timed out")?
        .context("Connect")?
        .into_inner();
        let mut stream = AgentStream { sender, inbound };
        let Some(Body::Challenge(challenge)) = stream.next().await? else {
            bail!("the server did not start with a Challenge");
        };
        let signature = self
            .key
            .sign(&signing::hello_bytes(&self.device_id, &challenge.nonce));
        stream
            .send(agent_message::Body::Hello(Hello {
                device_id: self.device_id.clone(),
                signature: signature.to_bytes().to_vec(),
            }))
            .await?;
        match stream.next().await? {
            Some(Body::Ready(_)) => Ok(stream),
            other => Err(anyhow!("expected Ready, got {other:?}")),
        }
    }

    /// A signed accept of `request` (no number matching).
    pub fn accept(&self, request: &ConfirmationRequest) -> SignedDecision {
        let bytes = signing::decision_bytes(&DecisionPayload {
            application_id: &request.application_id,
            transaction_id: &request.transaction_id,
            device_id: &self.device_id,
            nonce: &request.nonce,
            verdict: SignedVerdict::Accept,
            reason: "",
            display_hash: &signing::display_hash(&request.message, &request.context),
            number: None,
        });
        SignedDecision {
            transaction_id: request.transaction_id.clone(),
            decision: Decision::Accept.into(),
            reason: String::new(),
            signature: self.key.sign(&bytes).to_bytes().to_vec(),
            number: 0,
        }
    }
}

impl AgentStream {
    /// The next server message (`None` when the stream ended cleanly),
    /// within [`STEP_TIMEOUT`].
    pub async fn next(&mut self) -> anyhow::Result<Option<Body>> {
        let message = tokio::time::timeout(STEP_TIMEOUT, self.inbound.message())
            .await
            .context("no server message within the step timeout")?
            .context("the device stream failed")?;
        Ok(message.and_then(|m| m.body))
    }

    /// Sends one agent message.
    pub async fn send(&self, body: agent_message::Body) -> anyhow::Result<()> {
        self.sender
            .send(AgentMessage { body: Some(body) })
            .await
            .map_err(|_| anyhow!("the device stream is closed"))
    }

    /// Whether the stream is still open with nothing unexpected waiting:
    /// polls it once without blocking.
    pub fn is_quiet(&mut self) -> bool {
        use futures::FutureExt as _;
        self.inbound.message().now_or_never().is_none()
    }
}

/// Enrolls `count` devices, user `user(i)` for device `i`, with at most
/// `in_flight` enrollments at once; fails past `deadline`.
pub async fn enroll_many(
    url: &str,
    api_key: &str,
    count: usize,
    in_flight: usize,
    user: impl Fn(usize) -> String,
    deadline: Instant,
) -> anyhow::Result<Vec<SimDevice>> {
    let channels = client::channels(url, 4).await?;
    let rp = client::rp_client(channels[0].clone(), api_key)?;
    let jobs = (0..count).map(|i| {
        let mut rp = rp.clone();
        let channel = channels[i % channels.len()].clone();
        let user = user(i);
        async move { SimDevice::enroll(&mut rp, channel, user).await }
    });
    let enrolled = futures::stream::iter(jobs)
        .buffered(in_flight.clamp(1, 64))
        .try_collect::<Vec<_>>();
    let remaining = deadline.saturating_duration_since(Instant::now());
    tokio::time::timeout(remaining, enrolled)
        .await
        .with_context(|| format!("enrolling {count} devices did not finish in time"))?
}

/// Connects every device, [`STREAMS_PER_CHANNEL`] streams per connection.
pub async fn connect_all(
    url: &str,
    devices: &[SimDevice],
    in_flight: usize,
) -> anyhow::Result<Vec<AgentStream>> {
    let channels = client::channels(url, devices.len().div_ceil(STREAMS_PER_CHANNEL)).await?;
    let jobs = devices.iter().enumerate().map(|(i, device)| {
        // Spread over the servers when several are given.
        let channel = channels[i % channels.len()].clone();
        async move { device.connect(channel).await }
    });
    futures::stream::iter(jobs)
        .buffered(in_flight.max(1))
        .try_collect()
        .await
}
