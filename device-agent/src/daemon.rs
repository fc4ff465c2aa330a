//! The daemon: one event loop owning the server link, the bookkeeping of
//! callers and transactions, and the policy tasks; the control socket feeds
//! it commands. Everything stops when the shutdown token fires.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use assent_proto::v1::{ConfirmationRequest, ServerMessage, agent_message, server_message};
use chrono::DateTime;
use tokio::sync::mpsc;
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;
use tonic::transport::Endpoint;
use tracing::Instrument;

use crate::backoff::{Backoff, STABLE_SESSION};
use crate::config::AgentConfig;
use crate::connection::{self, ConnectError, Session, SessionSender};
use crate::control::{self, ControlCommand, DaemonStatus};
use crate::credentials::{self, DeviceProfile};
use crate::error::AgentError;
use crate::identity::Identity;
use crate::ledger::Ledger;
use crate::policy::{Confirmation, DenyReason, PolicyRunner, Verdict};

/// Runs the daemon for the enrollment in `config.state_dir`: serves the
/// control socket and keeps a stream to the server until `shutdown` fires,
/// then removes the socket.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    let (profile, key) = credentials::load(&config.state_dir)?;
    let endpoint = connection::endpoint(&config.server, config.ca_cert.as_deref())?;
    let socket = control::socket_path(&config.state_dir);
    let listener = control::bind(&socket).await?;
    tracing::info!(
        socket = %socket.display(),
        server = %config.server,
        policy = %config.policy,
        device_id = %profile.device_id,
        "agent daemon started"
    );
    let (commands, command_rx) = mpsc::channel(64);
    // Stopped only after the loop has answered every waiting caller.
    let stop_control = CancellationToken::new();
    let daemon = Daemon {
        identity: Identity::new(profile.device_id.clone(), key),
        runner: PolicyRunner::new(config.policy.clone(), config.exec_timeout),
        profile,
        config,
        endpoint,
        ledger: Ledger::default(),
        policies: JoinSet::new(),
        policy_tasks: HashMap::new(),
        backoff: Backoff::default(),
    };
    tokio::join!(
        control::serve(listener, commands, stop_control.clone()),
        async {
            daemon.run(command_rx, &shutdown).await;
            stop_control.cancel();
        }
    );
    if let Err(error) = std::fs::remove_file(&socket) {
        tracing::warn!(%error, "cannot remove the control socket");
    }
    tracing::info!("agent daemon stopped");
    Ok(())
}

type Connecting = Pin<Box<dyn Future<Output = Result<Session, ConnectError>> + Send>>;

/// The state of the link to the server.
enum Link {
    /// Disconnected; the next attempt starts at this instant.
    Waiting(Instant),
    /// An attempt is under way.
    Connecting(Connecting),
    /// Authenticated; `since` is when it became ready.
    Ready {
        sender: SessionSender,
        inbound: Box<Streaming<ServerMessage>>,
        since: Instant,
        span: tracing::Span,
    },
}

/// What woke the event loop up on the link.
enum LinkEvent {
    RetryDue,
    Established(Result<Session, ConnectError>),
    Received(Result<Option<ServerMessage>, tonic::Status>),
}

impl Link {
    /// Waits for the link's next event; cancel-safe, so `select!` may drop it.
    async fn next_event(&mut self) -> LinkEvent {
        match self {
            Self::Waiting(at) => {
                tokio::time::sleep_until(*at).await;
                LinkEvent::RetryDue
            }
            Self::Connecting(attempt) => LinkEvent::Established(attempt.await),
            Self::Ready { inbound, .. } => LinkEvent::Received(inbound.message().await),
        }
    }

    /// The sending half when the link is ready.
    fn sender(&self) -> Option<&SessionSender> {
        match self {
            Self::Ready { sender, .. } => Some(sender),
            _ => None,
        }
    }
}

/// What a finished policy task returns.
type PolicyOutput = (String, Option<Verdict>);

/// The event loop's state, apart from the link.
struct Daemon {
    config: AgentConfig,
    profile: DeviceProfile,
    identity: Identity,
    endpoint: Endpoint,
    runner: PolicyRunner,
    ledger: Ledger,
    /// One task per confirmation being decided; they outlive reconnects.
    policies: JoinSet<PolicyOutput>,
    /// Which transaction each policy task decides, to deny if one panics.
    policy_tasks: HashMap<Id, String>,
    backoff: Backoff,
}

impl Daemon {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<ControlCommand>,
        shutdown: &CancellationToken,
    ) {
        let mut link = Link::Waiting(Instant::now());
        let mut attempt = 0u64;
        let mut prune = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(command) = commands.recv() => self.on_command(command, link.sender()).await,
                Some(joined) = self.policies.join_next_with_id(), if !self.policies.is_empty() => {
                    let (transaction_id, verdict) = match joined {
                        Ok((id, output)) => {
                            self.policy_tasks.remove(&id);
                            output
                        }
                        Err(error) => {
                            tracing::error!(%error, "a policy task failed; denying");
                            let transaction_id = self.policy_tasks.remove(&error.id()).unwrap_or_default();
                            (transaction_id, Some(Verdict::Deny(DenyReason::Policy)))
                        }
                    };
                    if let Some(verdict) = verdict {
                        self.on_verdict(&transaction_id, verdict, link.sender()).await;
                    }
                }
                event = link.next_event() => {
                    link = match event {
                        LinkEvent::RetryDue => {
                            attempt += 1;
                            let span = tracing::info_span!("connection", server = %self.config.server, attempt);
                            let establish = connection::establish(self.endpoint.clone(), self.identity.clone());
                            Link::Connecting(Box::pin(establish.instrument(span)))
                        }
                        LinkEvent::Established(result) => self.on_established(result, attempt).await,
                        LinkEvent::Received(received) => match link {
                            Link::Ready { sender, inbound, since, span } => {
                                let next = self.on_received(received, since).instrument(span.clone()).await;
                                next.unwrap_or(Link::Ready { sender, inbound, since, span })
                            }
                            other => other,
                        },
                    };
                }
                _ = prune.tick() => self.ledger.prune_closed(),
            }
        }
        self.ledger
            .fail_waiters("the agent daemon is shutting down");
        self.ledger.cancel_policies();
        self.policies.shutdown().await;
    }

    async fn on_established(
        &mut self,
        result: Result<Session, ConnectError>,
        attempt: u64,
    ) -> Link {
        let span = tracing::info_span!("connection", server = %self.config.server, attempt);
        match result {
            Ok(session) => {
                span.in_scope(|| tracing::info!(user_id = %session.ready.user_id, "connected"));
                // Unacknowledged decisions first, then the waiting OTPs; the
                // server re-sends pending confirmations before reading either.
                let Session {
                    sender, inbound, ..
                } = session;
                for decision in self.ledger.unacknowledged() {
                    sender.send(agent_message::Body::Decision(decision)).await;
                }
                self.submit_queued(&sender).await;
                Link::Ready {
                    sender,
                    inbound: Box::new(inbound),
                    since: Instant::now(),
                    span,
                }
            }
            Err(error) => {
                if let ConnectError::Refused(_) = &error {
                    span.in_scope(|| tracing::error!(%error, "cannot connect"));
                    self.ledger.fail_waiters(&error.to_string());
                } else {
                    span.in_scope(|| tracing::warn!(%error, "cannot connect"));
                }
                self.retry_later()
            }
        }
    }

    /// Handles one stream event; `Some(link)` when the session is over.
    async fn on_received(
        &mut self,
        received: Result<Option<ServerMessage>, tonic::Status>,
        since: Instant,
    ) -> Option<Link> {
        let body = match received {
            Ok(Some(ServerMessage { body: Some(body) })) => body,
            Ok(Some(ServerMessage { body: None })) => return None,
            Ok(None) => {
                tracing::warn!("the server ended the stream");
                return Some(self.disconnected(since, None));
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "the stream failed");
                if status.code() == tonic::Code::PermissionDenied {
                    self.ledger.fail_waiters(&format!(
                        "the server refused this device: {}",
                        status.message()
                    ));
                }
                return Some(self.disconnected(since, None));
            }
        };
        match body {
            server_message::Body::ConfirmationRequest(request) => self.on_confirmation(request),
            server_message::Body::DecisionResult(result) => {
                let state = assent_proto::v1::TransactionState::try_from(result.state)
                    .map_or("UNKNOWN", |state| state.spec_name());
                tracing::info!(transaction_id = %result.transaction_id, state, applied = result.applied, "decision result");
                self.ledger.on_decision_result(&result);
            }
            server_message::Body::Rejection(rejection) => {
                tracing::warn!(
                    request_id = rejection.request_id,
                    transaction_id = %rejection.transaction_id,
                    code = rejection.code,
                    message = %rejection.message,
                    "request rejected"
                );
                self.ledger.on_rejection(&rejection);
            }
            server_message::Body::Cancellation(cancellation) => {
                tracing::info!(transaction_id = %cancellation.transaction_id, reason = %cancellation.reason, "request withdrawn");
                self.ledger.on_cancellation(&cancellation);
            }
            server_message::Body::GoAway(go_away) => {
                let delay = Duration::from_millis(u64::from(go_away.reconnect_after_ms));
                tracing::info!(
                    delay_ms = go_away.reconnect_after_ms,
                    "server draining; reconnecting"
                );
                return Some(self.disconnected(since, Some(delay)));
            }
            server_message::Body::Challenge(_) | server_message::Body::Ready(_) => {
                tracing::warn!("ignoring a handshake message on a ready stream");
            }
        }
        None
    }

    /// Starts the policy for a new confirmation request (once per transaction).
    fn on_confirmation(&mut self, request: ConfirmationRequest) {
        let span = tracing::info_span!("transaction", transaction_id = %request.transaction_id);
        let Some(cancel) = self.ledger.on_confirmation(&request) else {
            span.in_scope(|| tracing::info!("confirmation already being handled"));
            return;
        };
        span.in_scope(|| tracing::info!(request_id = request.request_id, "confirmation requested"));
        let confirmation = Confirmation {
            transaction_id: request.transaction_id.clone(),
            application_id: request.application_id,
            application_name: request.application_name,
            user_id: request.user_id,
            message: request.message,
            context: request.context,
            expires_at: request.expires_at.and_then(|at| {
                DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).unwrap_or(0))
            }),
        };
        let runner = self.runner.clone();
        let transaction_id = request.transaction_id;
        let owned_id = transaction_id.clone();
        let task = async move {
            let verdict = runner.decide(&confirmation, &cancel).await;
            (owned_id, verdict)
        };
        let handle = self.policies.spawn(task.instrument(span));
        self.policy_tasks.insert(handle.id(), transaction_id);
    }

    async fn on_verdict(
        &mut self,
        transaction_id: &str,
        verdict: Verdict,
        sender: Option<&SessionSender>,
    ) {
        let span = tracing::info_span!("transaction", transaction_id = %transaction_id);
        let Some(request) = self.ledger.deciding(transaction_id) else {
            span.in_scope(|| tracing::info!("verdict for a withdrawn request dropped"));
            return;
        };
        let decision = self.identity.sign_decision(request, verdict);
        span.in_scope(|| tracing::info!(verdict = ?verdict, "decided"));
        self.ledger.on_decided(decision.clone());
        if let Some(sender) = sender {
            sender.send(agent_message::Body::Decision(decision)).await;
        }
    }

    async fn on_command(&mut self, command: ControlCommand, sender: Option<&SessionSender>) {
        match command {
            ControlCommand::SubmitOtp { otp, reply } => {
                tracing::info!(transaction_id = %otp.transaction_id(), "OTP handed in");
                self.ledger.enqueue(otp, reply);
                if let Some(sender) = sender {
                    self.submit_queued(sender).await;
                }
            }
            ControlCommand::Status { reply } => {
                let _ = reply.send(DaemonStatus {
                    ok: true,
                    connected: sender.is_some(),
                    device_id: self.profile.device_id.clone(),
                    user_id: self.profile.user_id.clone(),
                    application_name: self.profile.application_name.clone(),
                    server: self.config.server.clone(),
                    policy: self.config.policy.to_string(),
                });
            }
        }
    }

    async fn submit_queued(&mut self, sender: &SessionSender) {
        for submission in self.ledger.take_submissions() {
            sender
                .send(agent_message::Body::SubmitOtp(submission))
                .await;
        }
    }

    /// The session ended: waiting OTPs go back to the queue and the next
    /// attempt is scheduled (after the server's delay when it asked for one).
    fn disconnected(&mut self, since: Instant, server_delay: Option<Duration>) -> Link {
        self.ledger.on_disconnect();
        if since.elapsed() >= STABLE_SESSION {
            self.backoff.reset();
        }
        match server_delay {
            Some(delay) => Link::Waiting(Instant::now() + delay),
            None => self.retry_later(),
        }
    }

    fn retry_later(&mut self) -> Link {
        let delay = self.backoff.next_delay(&mut rand::rng());
        tracing::info!(
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "reconnecting later"
        );
        Link::Waiting(Instant::now() + delay)
    }
}
