//! The daemon: one event loop owning the server link, the bookkeeping of
//! callers and transactions, and the policy tasks; the control socket feeds
//! it commands. Everything stops when the shutdown token fires.

mod link;
mod messages;

use std::collections::HashMap;
use std::time::Duration;

use assent_proto::v1::agent_message;
use tokio::sync::mpsc;
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;
use tracing::Instrument;

use self::link::{Link, LinkEvent};
use crate::backoff::{Backoff, STABLE_SESSION};
use crate::config::AgentConfig;
use crate::connection::{self, ConnectError, Session};
use crate::control::{self, ControlCommand};
use crate::credentials::{self, DeviceProfile};
use crate::error::AgentError;
use crate::identity::Identity;
use crate::ledger::Ledger;
use crate::policy::{DenyReason, PolicyRunner, Verdict};

/// Runs the daemon for the enrollment in `config.state_dir`: serves the
/// control socket and keeps a stream to the server until `shutdown` fires,
/// then removes the socket.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    let (profile, key) = credentials::load(&config.state_dir)?;
    let endpoints = connection::endpoints(&config.server, config.ca_cert.as_deref())?;
    // Agents spread over the list: each starts at a random server.
    let current = rand::random_range(0..endpoints.len());
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
        endpoints,
        current,
        ledger: Ledger::default(),
        policies: JoinSet::new(),
        policy_tasks: HashMap::new(),
        backoff: Backoff::default(),
        revoked: None,
        outage: None,
    };
    let state_dir = daemon.config.state_dir.clone();
    let ((), revoked) = tokio::join!(
        control::serve(listener, commands, stop_control.clone()),
        async {
            let revoked = daemon.run(command_rx, &shutdown).await;
            stop_control.cancel();
            revoked
        }
    );
    if let Err(error) = std::fs::remove_file(&socket) {
        tracing::warn!(%error, "cannot remove the control socket");
    }
    if let Some(message) = revoked {
        credentials::mark_revoked(&state_dir, &message);
        tracing::error!(%message, "this device was revoked; stopping (enroll it again)");
        return Err(AgentError::Revoked { message });
    }
    tracing::info!("agent daemon stopped");
    Ok(())
}

/// Whether a refusal says this device was revoked: nothing to retry.
fn is_revocation(status: &tonic::Status) -> bool {
    use tonic_types::StatusExt as _;
    status.code() == tonic::Code::PermissionDenied
        && status
            .get_details_error_info()
            .is_some_and(|info| info.reason == "DEVICE_REVOKED")
}

/// What a finished policy task returns.
type PolicyOutput = (String, Option<Verdict>);

/// The event loop's state, apart from the link.
struct Daemon {
    config: AgentConfig,
    profile: DeviceProfile,
    identity: Identity,
    /// The servers to connect to, and which one is tried next.
    endpoints: Vec<Endpoint>,
    current: usize,
    runner: PolicyRunner,
    ledger: Ledger,
    /// One task per confirmation being decided; they outlive reconnects.
    policies: JoinSet<PolicyOutput>,
    /// Which transaction each policy task decides, to deny if one panics.
    policy_tasks: HashMap<Id, String>,
    backoff: Backoff,
    /// Set once the server said this device is revoked: the loop ends.
    revoked: Option<String>,
    /// Since when, and why, the server cannot be reached (cleared once a
    /// stream is up).
    outage: Option<(Instant, String)>,
}

/// How long an outage may last before handed-in OTPs fail at once with its
/// reason instead of waiting for a connection.
const OUTAGE_GRACE: Duration = Duration::from_secs(3);

impl Daemon {
    /// Runs until `shutdown` fires, or the server revokes this device
    /// (then returns what it said).
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<ControlCommand>,
        shutdown: &CancellationToken,
    ) -> Option<String> {
        let mut link = Link::Waiting(Instant::now());
        let mut attempt = 0u64;
        let mut prune = tokio::time::interval(Duration::from_secs(1));
        while self.revoked.is_none() {
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
                            let endpoint = self.endpoints[self.current].clone();
                            let establish = connection::establish(endpoint, self.identity.clone());
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
        let stopping = match &self.revoked {
            Some(message) => format!("this device was revoked: {message}"),
            None => "the agent daemon is shutting down".to_owned(),
        };
        self.ledger.fail_waiters(&stopping);
        self.ledger.cancel_policies();
        self.policies.shutdown().await;
        self.revoked
    }

    async fn on_established(
        &mut self,
        result: Result<Session, ConnectError>,
        attempt: u64,
    ) -> Link {
        let span = tracing::info_span!("connection", server = %self.config.server, attempt);
        match result {
            Ok(session) => {
                self.outage = None;
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
                if let ConnectError::Refused(status) = &error {
                    span.in_scope(|| tracing::error!(%error, "cannot connect"));
                    if is_revocation(status) {
                        self.revoked = Some(status.message().to_owned());
                    }
                    self.ledger.fail_waiters(&error.to_string());
                } else {
                    span.in_scope(|| tracing::warn!(%error, "cannot connect"));
                    self.next_server();
                    let since = self
                        .outage
                        .as_ref()
                        .map_or_else(Instant::now, |(at, _)| *at);
                    self.outage = Some((since, error.to_string()));
                    self.fail_waiters_in_outage();
                }
                self.retry_later()
            }
        }
    }

    /// Fails the handed-in OTPs when the server has been unreachable for
    /// longer than [`OUTAGE_GRACE`]: the caller learns why at once instead
    /// of waiting out its timeout.
    fn fail_waiters_in_outage(&mut self) {
        if let Some((since, why)) = &self.outage
            && since.elapsed() >= OUTAGE_GRACE
        {
            let message = format!(
                "the agent cannot reach the server at {}: {why}; it keeps retrying — hand the \
                 code in again once `assent-agent status` says connected",
                self.config.server
            );
            self.ledger.fail_waiters(&message);
        }
    }

    /// The session ended: waiting OTPs go back to the queue and the next
    /// attempt is scheduled (after the server's delay when it asked for one).
    fn disconnected(&mut self, since: Instant, server_delay: Option<Duration>) -> Link {
        self.ledger.on_disconnect();
        // Draining, gone or failing: the next attempt goes to another server.
        self.next_server();
        if since.elapsed() >= STABLE_SESSION {
            self.backoff.reset();
        }
        match server_delay {
            Some(delay) => Link::Waiting(Instant::now() + delay),
            None => self.retry_later(),
        }
    }

    /// Moves to the next server of the list (a no-op with one server).
    fn next_server(&mut self) {
        self.current = (self.current + 1) % self.endpoints.len();
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
