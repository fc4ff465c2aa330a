//! `DeviceService` adapters: `Enroll`, and `Connect`, which hands the stream
//! to a session task owned by the server.

use std::sync::Arc;

use assent_proto::v1::device_service_server::DeviceService;
use assent_proto::v1::{AgentMessage, EnrollRequest, EnrollResponse, ServerMessage};
use chrono::Utc;
use ed25519_dalek::Signature;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, instrument};

use super::session::DeviceSession;
use crate::domain::{DeviceName, EnrollmentCode, InputError};
use crate::service::{AuthService, EnrollInput};

/// Outbound messages a session may queue before it waits for the client.
const OUTBOUND_QUEUE: usize = 32;

/// Serves device agents.
pub struct DeviceHandler {
    service: Arc<AuthService>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl DeviceHandler {
    /// An adapter over `service`; sessions say GoAway when `shutdown` fires.
    pub fn new(service: Arc<AuthService>, tasks: TaskTracker, shutdown: CancellationToken) -> Self {
        Self {
            service,
            tasks,
            shutdown,
        }
    }
}

/// Parses a 64-byte Ed25519 signature field.
pub(super) fn signature(field: &'static str, bytes: &[u8]) -> Result<Signature, InputError> {
    Signature::from_slice(bytes)
        .map_err(|_| InputError::new(field, "must be a 64-byte Ed25519 signature"))
}

#[tonic::async_trait]
impl DeviceService for DeviceHandler {
    #[instrument(skip_all, fields(rpc = "Enroll"))]
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let body = request.into_inner();
        let input = EnrollInput {
            code: EnrollmentCode::parse(&body.code)?,
            code_text: body.code,
            public_key: body.public_key.as_slice().try_into().map_err(|_| {
                InputError::new("public_key", "must be a 32-byte Ed25519 public key")
            })?,
            device_name: DeviceName::parse(&body.device_name)?,
            proof: signature("proof", &body.proof)?,
        };
        let device = self.service.enroll(input, Utc::now()).await?;
        Ok(Response::new(EnrollResponse {
            device_id: device.id.to_string(),
            user_id: device.user_id,
            application_id: device.application_id.to_string(),
            application_name: device.application_name,
        }))
    }

    type ConnectStream = futures::stream::Map<
        ReceiverStream<Result<Box<ServerMessage>, Status>>,
        fn(Result<Box<ServerMessage>, Status>) -> Result<ServerMessage, Status>,
    >;

    #[instrument(skip_all, fields(rpc = "Connect"))]
    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let (outbound, receiver) = mpsc::channel(OUTBOUND_QUEUE);
        let session = DeviceSession::new(
            Arc::clone(&self.service),
            request.into_inner(),
            outbound,
            self.shutdown.child_token(),
        );
        self.tasks.spawn(
            session
                .run()
                .instrument(tracing::info_span!("device_session")),
        );
        let unbox: fn(Result<Box<ServerMessage>, Status>) -> Result<ServerMessage, Status> =
            |item| item.map(|message| *message);
        Ok(Response::new(ReceiverStream::new(receiver).map(unbox)))
    }
}
