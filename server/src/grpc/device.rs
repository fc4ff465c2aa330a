//! `DeviceService` adapters: `Enroll`, and `Connect`, which hands the stream
//! to a device session owned by the server.

use std::sync::Arc;

use assent_proto::v1::device_service_server::DeviceService;
use assent_proto::v1::{AgentMessage, EnrollRequest, EnrollResponse, ServerMessage};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, instrument};

use super::status::to_status;
use crate::domain::{DeviceName, EnrollmentCode, InputError};
use crate::service::{EnrollInput, Refused, ServiceError, Services};
use crate::session::{DeviceSession, SessionIo};

/// Outbound messages a session may queue before it waits for the client.
const OUTBOUND_QUEUE: usize = 32;

/// Serves device agents.
pub struct DeviceHandler {
    services: Arc<Services>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    send_deadline: std::time::Duration,
}

impl DeviceHandler {
    /// An adapter over `services`; sessions say GoAway when `shutdown`
    /// fires, and give up on a device that does not read for `send_deadline`.
    pub fn new(
        services: Arc<Services>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
        send_deadline: std::time::Duration,
    ) -> Self {
        Self {
            services,
            tasks,
            shutdown,
            send_deadline,
        }
    }
}

/// A transport error on the inbound stream (an undecodable or oversized
/// message), as the session ends with it.
fn inbound_error(status: Status) -> ServiceError {
    match status.code() {
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => {
            ServiceError::ResourceExhausted(Refused::new(
                "MESSAGE_TOO_LARGE",
                format!(
                    "message refused: {}; messages are limited to {} bytes",
                    status.message(),
                    super::limits::MAX_MESSAGE_BYTES
                ),
            ))
        }
        _ => InputError::new("stream", status.message().to_owned()).into(),
    }
}

type ConnectStream = futures::stream::BoxStream<'static, Result<ServerMessage, Status>>;

#[tonic::async_trait]
impl DeviceService for DeviceHandler {
    #[instrument(skip_all, fields(rpc = "Enroll"))]
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let peer = super::connection::of(&request)
            .and_then(|info| info.remote)
            .map(|addr| addr.ip());
        let body = request.into_inner();
        let input = EnrollInput {
            code: EnrollmentCode::parse(&body.code)?,
            code_text: body.code,
            public_key: body.public_key.as_slice().try_into().map_err(|_| {
                InputError::new("public_key", "must be a 32-byte Ed25519 public key")
            })?,
            device_name: DeviceName::parse(&body.device_name)?,
            proof: crate::session::signature("proof", &body.proof)?,
        };
        let device = self.services.enrollment.enroll(input, peer).await?;
        Ok(Response::new(EnrollResponse {
            device_id: device.id.to_string(),
            user_id: device.user_id.to_string(),
            application_id: device.application_id.to_string(),
            application_name: device.application_name,
        }))
    }

    type ConnectStream = ConnectStream;

    #[instrument(skip_all, fields(rpc = "Connect"))]
    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        // Read while the handler runs inside its stream's task.
        let reset = super::transport::StreamReset::current().into_token();
        let (outbound, receiver) = mpsc::channel(OUTBOUND_QUEUE);
        let inbound = request
            .into_inner()
            .map(|item| item.map_err(inbound_error))
            .boxed();
        let io = SessionIo {
            inbound,
            outbound,
            reset,
            shutdown: self.shutdown.child_token(),
            send_deadline: self.send_deadline,
        };
        let span = tracing::info_span!("device_session", device_id = tracing::field::Empty);
        self.tasks
            .spawn(DeviceSession::run(Arc::clone(&self.services), io).instrument(span));
        let stream = ReceiverStream::new(receiver)
            .map(|item| item.map(|message| *message).map_err(|e| to_status(&e)))
            .boxed();
        Ok(Response::new(stream))
    }
}
