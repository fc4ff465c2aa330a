//! One device's `Connect` stream: challenge → signed hello → ready, then
//! OTP submissions, decisions, and commands from the notifier, until the
//! device leaves, is revoked, or the server drains.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use assent_proto::signing::SignedVerdict;
use assent_proto::v1::{
    self, AgentMessage, Challenge, DecisionResult, Ready, Rejection, ServerMessage, agent_message,
    server_message::Body,
};
use chrono::Utc;
use rand::RngCore;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

use super::device::signature;
use super::status::to_status;
use super::{convert, secure_rng};
use crate::domain::{DenyReason, DeviceId, InputError, TransactionId};
use crate::notify::DeviceCommand;
use crate::service::{AuthService, DecisionInput, ServiceError};
use crate::store::DeviceRecord;

/// How long a new stream may take to answer the challenge.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a connected device's `last_seen` is refreshed.
const LAST_SEEN_EVERY: Duration = Duration::from_secs(30);
/// Suggested delay before an agent reconnects after GoAway.
const RECONNECT_AFTER_MS: u32 = 500;

/// Messages are queued boxed: an idle session's channel block then holds
/// pointer-sized slots instead of full messages (BENCHMARKS.md, idle memory).
pub(super) type Outbound = mpsc::Sender<Result<Box<ServerMessage>, Status>>;

/// The state of one `Connect` stream.
pub struct DeviceSession {
    service: Arc<AuthService>,
    inbound: Streaming<AgentMessage>,
    outbound: Outbound,
    shutdown: CancellationToken,
}

impl DeviceSession {
    /// A session over one stream.
    pub fn new(
        service: Arc<AuthService>,
        inbound: Streaming<AgentMessage>,
        outbound: Outbound,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            service,
            inbound,
            outbound,
            shutdown,
        }
    }

    /// Sends one message; false once the client is gone.
    async fn send(&self, body: Body) -> bool {
        self.outbound
            .send(Ok(Box::new(ServerMessage { body: Some(body) })))
            .await
            .is_ok()
    }

    /// Ends the stream with an error status.
    async fn fail(&self, status: Status) {
        let _ = self.outbound.send(Err(status)).await;
    }

    /// Runs the session to its end.
    pub async fn run(mut self) {
        let mut nonce = [0u8; 32];
        secure_rng().fill_bytes(&mut nonce);
        if !self
            .send(Body::Challenge(Challenge {
                nonce: nonce.to_vec(),
            }))
            .await
        {
            return;
        }
        let device = match self.authenticate(&nonce).await {
            Ok(device) => device,
            Err(status) => return self.fail(status).await,
        };
        tracing::Span::current().record("device_id", tracing::field::display(device.id));
        tracing::info!(device_id = %device.id, "device connected");
        let mut registration = self.service.notifier().register_device(device.id);
        let ready = Ready {
            device_id: device.id.to_string(),
            user_id: device.user_id.clone(),
            application_name: device.application_name.clone(),
        };
        if !self.send(Body::Ready(ready)).await {
            return;
        }
        // A push created while this query runs is both in its result and in
        // the inbox: remember what was sent so it goes out once.
        let Some(mut already_sent) = self.resend_open(&device).await else {
            return;
        };
        let mut heartbeat = tokio::time::interval(LAST_SEEN_EVERY);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => {
                    let go_away = v1::GoAway { reconnect_after_ms: RECONNECT_AFTER_MS };
                    self.send(Body::GoAway(go_away)).await;
                    break;
                }
                command = registration.recv() => match command {
                    Some(DeviceCommand::Cancel { transaction_id, reason }) => {
                        let cancellation = v1::Cancellation {
                            transaction_id: transaction_id.to_string(),
                            reason,
                        };
                        if !self.send(Body::Cancellation(cancellation)).await {
                            break;
                        }
                    }
                    Some(DeviceCommand::Confirm(record)) if already_sent.remove(&record.id) => {}
                    Some(DeviceCommand::Confirm(record)) => {
                        let request = convert::confirmation(&record, &device.application_name, 0);
                        if !self.send(Body::ConfirmationRequest(request)).await {
                            break;
                        }
                    }
                    Some(DeviceCommand::Revoked) | None => {
                        self.fail(Status::permission_denied("this device has been revoked")).await;
                        break;
                    }
                },
                _ = heartbeat.tick() => self.touch(&device).await,
                message = self.inbound.message() => match message {
                    Ok(Some(message)) => {
                        if !self.handle(&device, message).await {
                            break;
                        }
                    }
                    Ok(None) | Err(_) => break,
                },
            }
        }
        drop(registration);
        self.touch(&device).await;
        tracing::info!(device_id = %device.id, "device disconnected");
    }

    /// Records `last_seen`; a failure only delays presence, so it is logged.
    async fn touch(&self, device: &DeviceRecord) {
        if let Err(error) = self.service.touch_device(device.id, Utc::now()).await {
            tracing::warn!(%error, "cannot record last_seen");
        }
    }

    async fn authenticate(&mut self, nonce: &[u8]) -> Result<DeviceRecord, Status> {
        let first = tokio::time::timeout(HELLO_TIMEOUT, self.inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no hello within 10 s of the challenge"))??;
        let Some(AgentMessage {
            body: Some(agent_message::Body::Hello(hello)),
        }) = first
        else {
            return Err(Status::unauthenticated(
                "the first message on Connect must be a signed Hello",
            ));
        };
        let device_id = DeviceId::parse(&hello.device_id)?;
        let signature = signature("signature", &hello.signature)?;
        Ok(self
            .service
            .authenticate_device(device_id, nonce, &signature, Utc::now())
            .await?)
    }

    /// Sends what the device should be asked now (OTP transactions it scanned
    /// and has not answered, pending pushes to its user), so a
    /// reconnect never strands a login.
    /// Returns the transactions sent, or `None` once the client is gone.
    async fn resend_open(&self, device: &DeviceRecord) -> Option<HashSet<TransactionId>> {
        match self.service.open_confirmations(device, Utc::now()).await {
            Ok(open) => {
                let mut sent = HashSet::with_capacity(open.len());
                for record in open {
                    let request = convert::confirmation(&record, &device.application_name, 0);
                    if !self.send(Body::ConfirmationRequest(request)).await {
                        return None;
                    }
                    sent.insert(record.id);
                }
                Some(sent)
            }
            Err(error) => {
                self.fail(to_status(&error)).await;
                None
            }
        }
    }

    /// Handles one agent message; false once the client is gone.
    async fn handle(&self, device: &DeviceRecord, message: AgentMessage) -> bool {
        match message.body {
            Some(agent_message::Body::SubmitOtp(submit)) => {
                let now = Utc::now();
                let body = match self
                    .service
                    .submit_otp(device, &submit.otp, now, &mut secure_rng())
                    .await
                {
                    Ok(record) => Body::ConfirmationRequest(convert::confirmation(
                        &record,
                        &device.application_name,
                        submit.request_id,
                    )),
                    Err(error) => rejection(submit.request_id, "", &error),
                };
                self.send(body).await
            }
            Some(agent_message::Body::Decision(decision)) => {
                let transaction_id = decision.transaction_id.clone();
                let body = match self.decide(device, decision).await {
                    Ok(body) => body,
                    Err(error) => rejection(0, &transaction_id, &error),
                };
                self.send(body).await
            }
            Some(agent_message::Body::Hello(_)) | None => {
                let error = ServiceError::FailedPrecondition(
                    "the stream is already authenticated; send SubmitOtp or SignedDecision"
                        .to_owned(),
                );
                self.send(rejection(0, "", &error)).await
            }
        }
    }

    async fn decide(
        &self,
        device: &DeviceRecord,
        decision: v1::SignedDecision,
    ) -> Result<Body, ServiceError> {
        let verdict = match v1::Decision::try_from(decision.decision) {
            Ok(v1::Decision::Accept) => SignedVerdict::Accept,
            Ok(v1::Decision::Deny) => SignedVerdict::Deny,
            _ => {
                return Err(InputError::new(
                    "decision",
                    "must be DECISION_ACCEPT or DECISION_DENY",
                )
                .into());
            }
        };
        let reason = DenyReason::parse(&decision.reason)?;
        if verdict == SignedVerdict::Accept && reason.is_some() {
            return Err(InputError::new("reason", "must be empty when accepting").into());
        }
        let number = match decision.number {
            0 => None,
            n @ 10..=99 => u8::try_from(n).ok(),
            _ => {
                return Err(
                    InputError::new("number", "must be 0 or one of the offered choices").into(),
                );
            }
        };
        let input = DecisionInput {
            transaction_id: TransactionId::parse(&decision.transaction_id)?,
            verdict,
            reason,
            number,
            signature: signature("signature", &decision.signature)?,
        };
        let now = Utc::now();
        let outcome = self.service.decide(device, input, now).await?;
        let record = &outcome.transaction;
        Ok(Body::DecisionResult(DecisionResult {
            transaction_id: record.id.to_string(),
            state: convert::state(record.state_at(now)).into(),
            reason: record.reason.clone().unwrap_or_default(),
            applied: outcome.applied,
        }))
    }
}

/// A refusal that keeps the stream open.
fn rejection(request_id: u64, transaction_id: &str, error: &ServiceError) -> Body {
    let status = to_status(error);
    Body::Rejection(Rejection {
        request_id,
        transaction_id: transaction_id.to_owned(),
        code: status.code() as i32,
        message: status.message().to_owned(),
    })
}
