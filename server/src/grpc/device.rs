//! `DeviceService` adapters: `Enroll`, and `Connect`, which decodes the
//! device's messages for a device session owned by the server and encodes
//! what the session says (and the error that ends it) for the wire.

use std::sync::Arc;

use assent_proto::signing::SignedVerdict;
use assent_proto::v1::device_service_server::DeviceService;
use assent_proto::v1::{
    self, AgentMessage, EnrollRequest, EnrollResponse, ServerMessage, agent_message,
    server_message::Body,
};
use ed25519_dalek::Signature;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, instrument};

use super::convert;
use super::status::to_status;
use crate::domain::transaction::Decision;
use crate::domain::{DenyReason, DeviceId, DeviceName, EnrollmentCode, InputError, TransactionId};
use crate::service::{DecisionInput, EnrollInput, Refused, ServiceError, Services, reason};
use crate::session::{DeviceSession, FromDevice, SessionIo, ToDevice};

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
                reason::MESSAGE_TOO_LARGE,
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
            proof: signature("proof", &body.proof)?,
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
            .map(|item| item.map(decode).map_err(inbound_error))
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
            .map(|item| match *item {
                Ok(message) => Ok(encode(message)),
                Err(error) => Err(to_status(&error)),
            })
            .boxed();
        Ok(Response::new(stream))
    }
}

/// Parses a 64-byte Ed25519 signature field.
fn signature(field: &'static str, bytes: &[u8]) -> Result<Signature, InputError> {
    Signature::from_slice(bytes)
        .map_err(|_| InputError::new(field, "must be a 64-byte Ed25519 signature"))
}

/// A device's wire message as the session takes it.
fn decode(message: AgentMessage) -> FromDevice {
    let invalid = |transaction_id: &str, error: InputError| FromDevice::Invalid {
        transaction_id: transaction_id.to_owned(),
        error,
    };
    match message.body {
        Some(agent_message::Body::Hello(hello)) => {
            let parsed = DeviceId::parse(&hello.device_id)
                .and_then(|id| Ok((id, signature("signature", &hello.signature)?)));
            match parsed {
                Ok((device_id, signature)) => FromDevice::Hello {
                    device_id,
                    signature,
                },
                Err(error) => invalid("", error),
            }
        }
        Some(agent_message::Body::SubmitOtp(submit)) => FromDevice::SubmitOtp {
            request_id: submit.request_id,
            otp: submit.otp,
        },
        Some(agent_message::Body::Decision(decision)) => match decision_input(&decision) {
            Ok(input) => FromDevice::Decision(input),
            Err(error) => invalid(&decision.transaction_id, error),
        },
        Some(agent_message::Body::Unenroll(_)) => FromDevice::Unenroll,
        None => FromDevice::Unexpected,
    }
}

/// Parses a wire decision.
fn decision_input(decision: &v1::SignedDecision) -> Result<DecisionInput, InputError> {
    let verdict = match v1::Decision::try_from(decision.decision) {
        Ok(v1::Decision::Accept) => SignedVerdict::Accept,
        Ok(v1::Decision::Deny) => SignedVerdict::Deny,
        _ => {
            return Err(InputError::new(
                "decision",
                "must be DECISION_ACCEPT or DECISION_DENY",
            ));
        }
    };
    let number = match decision.number {
        0 => None,
        n @ 10..=99 => u8::try_from(n).ok(),
        _ => {
            return Err(InputError::new(
                "number",
                "must be 0 or one of the offered choices",
            ));
        }
    };
    Ok(DecisionInput {
        transaction_id: TransactionId::parse(&decision.transaction_id)?,
        decision: Decision {
            verdict,
            reason: DenyReason::parse(&decision.reason)?,
            number,
            signature: signature("signature", &decision.signature)?.to_bytes(),
        },
    })
}

/// What the session says, on the wire.
fn encode(message: ToDevice) -> ServerMessage {
    let body = match message {
        ToDevice::Challenge { nonce } => Body::Challenge(v1::Challenge {
            nonce: nonce.to_vec(),
        }),
        ToDevice::Ready { device } => Body::Ready(v1::Ready {
            device_id: device.id.to_string(),
            user_id: device.user_id.to_string(),
            application_name: device.application_name.clone(),
        }),
        ToDevice::Confirm {
            transaction,
            application_name,
            request_id,
        } => Body::ConfirmationRequest(convert::confirmation(
            &transaction,
            &application_name,
            request_id,
        )),
        ToDevice::Withdrawn {
            transaction_id,
            reason,
        } => Body::Cancellation(v1::Cancellation {
            transaction_id: transaction_id.to_string(),
            reason: reason.as_str().to_owned(),
        }),
        ToDevice::Decided {
            transaction,
            applied,
        } => Body::DecisionResult(v1::DecisionResult {
            transaction_id: transaction.id.to_string(),
            state: convert::state(transaction.state).into(),
            reason: transaction
                .reason
                .map(|r| r.as_str().to_owned())
                .unwrap_or_default(),
            applied,
        }),
        ToDevice::Rejected {
            request_id,
            transaction_id,
            error,
        } => {
            let status = to_status(&error);
            Body::Rejection(v1::Rejection {
                request_id,
                transaction_id,
                code: status.code() as i32,
                message: status.message().to_owned(),
            })
        }
        ToDevice::GoAway { reconnect_after_ms } => Body::GoAway(v1::GoAway { reconnect_after_ms }),
    };
    ServerMessage { body: Some(body) }
}
