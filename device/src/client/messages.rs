//! The event loop's reactions to server messages, finished handler calls
//! and commands. Confirmation requests are handled alike whether a caller
//! handed in an OTP or the server pushed them (request id 0, nobody waiting):
//! the handler decides and the outcome is reported to the callers, if any,
//! to the handler, and logged.

use std::time::Duration;

use assent_proto::v1::{ConfirmationRequest, ServerMessage, agent_message, server_message};
use tokio::time::Instant;
use tracing::Instrument;

use super::link::Link;
use super::{Command, EventLoop, Status};
use crate::answer::{Answer, DenyReason};
use crate::connection::SessionSender;
use crate::handler::{Handler, Withdrawn};
use crate::request::Request;

impl<H: Handler> EventLoop<H> {
    /// Handles one stream event; `Some(link)` when the session is over.
    pub(super) async fn on_received(
        &mut self,
        received: Result<Option<ServerMessage>, tonic::Status>,
        since: Instant,
    ) -> Option<Link> {
        let body = match received {
            Ok(Some(ServerMessage { body: Some(body) })) => body,
            Ok(Some(ServerMessage { body: None })) => return None,
            Ok(None) => {
                tracing::warn!("the server ended the stream");
                return Some(self.disconnected(since, None, "the server ended the stream"));
            }
            Err(status) => {
                tracing::warn!(message = status.message(), "the stream failed");
                if status.code() == tonic::Code::PermissionDenied {
                    self.ledger.fail_waiters(&format!(
                        "the server refused this device: {}",
                        status.message()
                    ));
                }
                if super::is_revocation(&status) {
                    self.revoked = Some(status.message().to_owned());
                }
                let reason = format!("the stream failed: {}", status.message());
                return Some(self.disconnected(since, None, &reason));
            }
        };
        match body {
            server_message::Body::ConfirmationRequest(request) => self.on_confirmation(request),
            server_message::Body::DecisionResult(result) => {
                let state = assent_proto::v1::TransactionState::try_from(result.state)
                    .map_or("UNKNOWN", |state| state.spec_name());
                let callers = self.ledger.on_decision_result(&result);
                self.handler
                    .on_decided(&result.transaction_id, state, result.applied);
                tracing::info!(
                    transaction_id = %result.transaction_id,
                    state,
                    reason = %result.reason,
                    applied = result.applied,
                    callers,
                    "decision result"
                );
            }
            server_message::Body::Rejection(rejection) => {
                if self.ledger.keeps_for_resend(&rejection) {
                    tracing::warn!(
                        transaction_id = %rejection.transaction_id,
                        code = rejection.code,
                        message = %rejection.message,
                        "the server could not record the decision now; re-sending it on a new stream"
                    );
                    let reason = "the server could not record a decision";
                    return Some(self.disconnected(since, None, reason));
                }
                let callers = self.ledger.on_rejection(&rejection);
                tracing::warn!(
                    request_id = rejection.request_id,
                    transaction_id = %rejection.transaction_id,
                    code = rejection.code,
                    message = %rejection.message,
                    callers,
                    "request rejected"
                );
            }
            server_message::Body::Cancellation(cancellation) => {
                // The ledger stops the policy task at once (its token fires).
                let callers = self.ledger.on_cancellation(&cancellation);
                self.handler
                    .on_withdrawn(&cancellation.transaction_id, &cancellation.reason);
                tracing::info!(
                    transaction_id = %cancellation.transaction_id,
                    reason = %cancellation.reason,
                    callers,
                    "request withdrawn"
                );
            }
            server_message::Body::GoAway(go_away) => {
                let delay = Duration::from_millis(u64::from(go_away.reconnect_after_ms));
                tracing::info!(
                    delay_ms = go_away.reconnect_after_ms,
                    "server draining; reconnecting"
                );
                return Some(self.disconnected(since, Some(delay), "the server is draining"));
            }
            server_message::Body::Challenge(_) | server_message::Body::Ready(_) => {
                tracing::warn!("ignoring a handshake message on a ready stream");
            }
        }
        None
    }

    /// Asks the handler about a new confirmation request (once per
    /// transaction); a request it cannot be asked about (unknown kind,
    /// malformed number choices) is denied with reason `policy`.
    pub(super) fn on_confirmation(&mut self, request: ConfirmationRequest) {
        let span = tracing::info_span!("transaction", transaction_id = %request.transaction_id);
        let Some(cancel) = self.ledger.on_confirmation(&request) else {
            span.in_scope(|| tracing::info!("confirmation already handled"));
            return;
        };
        span.in_scope(|| {
            tracing::info!(
                request_id = request.request_id,
                kind = match request.kind() {
                    assent_proto::v1::TransactionKind::Push => "push",
                    _ => "otp",
                },
                number_matching = !request.number_choices.is_empty(),
                "confirmation requested"
            );
        });
        let parsed = Request::from_request(&request);
        let handler = std::sync::Arc::clone(&self.handler);
        let transaction_id = request.transaction_id;
        let owned_id = transaction_id.clone();
        let task = async move {
            let answer = match parsed {
                Ok(request) => {
                    let withdrawn = Withdrawn(cancel.clone());
                    tokio::select! {
                        answer = handler.confirm(request, withdrawn) => Some(answer),
                        () = cancel.cancelled() => None,
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot put the request to the handler; denying");
                    Some(Answer::Deny(DenyReason::Policy))
                }
            };
            (owned_id, answer)
        };
        let handle = self.deciding.spawn(task.instrument(span));
        self.decision_tasks.insert(handle.id(), transaction_id);
    }

    pub(super) async fn on_verdict(
        &mut self,
        transaction_id: &str,
        verdict: Answer,
        sender: Option<&SessionSender>,
    ) {
        let span = tracing::info_span!("transaction", transaction_id = %transaction_id);
        let Some(request) = self.ledger.deciding(transaction_id) else {
            span.in_scope(|| tracing::info!("verdict for a withdrawn request dropped"));
            return;
        };
        let verdict = if verdict.answers(&request.number_choices) {
            verdict
        } else {
            // The request was re-sent with other choices while the policy ran.
            span.in_scope(|| {
                tracing::warn!(verdict = ?verdict, "the verdict does not answer the number choices; denying");
            });
            Answer::Deny(DenyReason::Policy)
        };
        let decision = self.identity.sign_decision(request, verdict);
        span.in_scope(|| tracing::info!(verdict = ?verdict, "decided"));
        self.ledger.on_decided(decision.clone());
        if let Some(sender) = sender {
            sender.send(agent_message::Body::Decision(decision)).await;
        }
    }

    pub(super) async fn on_command(&mut self, command: Command, sender: Option<&SessionSender>) {
        match command {
            Command::SubmitOtp { otp, reply } => {
                tracing::info!(transaction_id = %otp.transaction_id(), "OTP handed in");
                self.ledger.enqueue(otp, reply);
                match sender {
                    Some(sender) => self.submit_queued(sender).await,
                    None => self.fail_waiters_in_outage(),
                }
            }
            Command::Status { reply } => {
                let _ = reply.send(Status {
                    connected: sender.is_some(),
                    profile: self.profile.clone(),
                });
            }
            Command::Pending { reply } => {
                let _ = reply.send(self.ledger.deciding_requests());
            }
        }
    }

    pub(super) async fn submit_queued(&mut self, sender: &SessionSender) {
        for submission in self.ledger.take_submissions() {
            sender
                .send(agent_message::Body::SubmitOtp(submission))
                .await;
        }
    }
}
