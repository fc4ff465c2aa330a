//! The running device: one event loop owning the server link, the
//! bookkeeping of callers and transactions (the ledger) and one task per
//! confirmation being decided by the host's [`Handler`]. A [`Device`]
//! starts it; its [`DeviceHandle`]s hand OTPs in and ask for the status and
//! the pending requests. Everything stops when the device is stopped, dropped
//! or revoked.

mod link;
mod messages;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use assent_proto::v1::agent_message;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{Id, JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;
use tracing::Instrument;

use self::link::{Link, LinkEvent};
use crate::answer::{Answer, DenyReason};
use crate::backoff::{Backoff, STABLE_SESSION};
use crate::config::DeviceConfig;
use crate::connection::{self, ConnectError, Session};
use crate::credentials::{self, DeviceProfile};
use crate::error::Error;
use crate::handler::{ConnectionState, Handler};
use crate::identity::Identity;
use crate::ledger::Ledger;
use crate::otp::Otp;
use crate::outcome::OtpOutcome;
use crate::request::Request;

/// Commands a [`DeviceHandle`] sends to the event loop.
#[derive(Debug)]
pub(crate) enum Command {
    /// Hand in a well-formed OTP and report its outcome.
    SubmitOtp {
        otp: Otp,
        reply: oneshot::Sender<OtpOutcome>,
    },
    /// Report the state.
    Status { reply: oneshot::Sender<Status> },
    /// List the requests being decided.
    Pending {
        reply: oneshot::Sender<Vec<Request>>,
    },
}

/// What a device reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Whether an authenticated stream to the server is up.
    pub connected: bool,
    /// The enrollment.
    pub profile: DeviceProfile,
}

/// A running device: holds the stream to the server and answers
/// confirmation requests through its handler until stopped (or dropped).
pub struct Device {
    handle: DeviceHandle,
    stop: CancellationToken,
    task: Option<JoinHandle<Option<String>>>,
}

/// A cheap, cloneable way to talk to a running [`Device`].
#[derive(Debug, Clone)]
pub struct DeviceHandle {
    commands: mpsc::Sender<Command>,
}

/// What a handle answers once the device has stopped.
const STOPPED: &str = "the device has stopped";

impl DeviceHandle {
    /// Hands in the OTP the login page shows (scanned or typed: base64 or
    /// base64url, padded or not) and waits for its outcome: `ok` when the
    /// login was accepted; otherwise the final state or the error.
    pub async fn submit_otp(&self, otp: &str) -> OtpOutcome {
        match Otp::parse(otp) {
            Ok(otp) => self.submit(otp).await,
            Err(malformed) => OtpOutcome::failed(None, malformed.to_string()),
        }
    }

    /// [`DeviceHandle::submit_otp`] with an OTP already parsed; dropping the
    /// returned future withdraws the caller's interest (the OTP is not sent
    /// if it has not been yet).
    pub async fn submit(&self, otp: Otp) -> OtpOutcome {
        let transaction_id = otp.transaction_id().to_owned();
        let (reply, outcome) = oneshot::channel();
        if self
            .commands
            .send(Command::SubmitOtp { otp, reply })
            .await
            .is_err()
        {
            return OtpOutcome::failed(Some(&transaction_id), STOPPED);
        }
        outcome
            .await
            .unwrap_or_else(|_| OtpOutcome::failed(Some(&transaction_id), STOPPED))
    }

    /// Whether the device is connected, and its enrollment; `None` once it
    /// has stopped.
    pub async fn status(&self) -> Option<Status> {
        let (reply, status) = oneshot::channel();
        self.commands.send(Command::Status { reply }).await.ok()?;
        status.await.ok()
    }

    /// The confirmation requests the handler is deciding now (after a
    /// reconnect, the server sends the open ones again).
    pub async fn pending(&self) -> Vec<Request> {
        let (reply, pending) = oneshot::channel();
        if self
            .commands
            .send(Command::Pending { reply })
            .await
            .is_err()
        {
            return Vec::new();
        }
        pending.await.unwrap_or_default()
    }
}

impl Device {
    /// Starts the device enrolled in `config.state_dir`: connects (and
    /// keeps reconnecting) to `config.server`, asking `handler` about every
    /// confirmation request. Fails at once when there is no usable
    /// enrollment or server URL. Call it inside a Tokio runtime (the
    /// device's event loop is a task of it); a host without one (a binding)
    /// enters its own runtime first.
    pub fn start<H: Handler>(config: DeviceConfig, handler: H) -> Result<Self, Error> {
        let (profile, key) = credentials::load(&config.state_dir, config.keys().as_ref())?;
        let endpoints = connection::endpoints(&config.server, connection::TlsFiles::of(&config))?;
        // Devices spread over the list: each starts at a random server.
        let current = rand::random_range(0..endpoints.len());
        let (commands, command_rx) = mpsc::channel(64);
        let stop = CancellationToken::new();
        let event_loop = EventLoop {
            identity: Identity::new(profile.device_id.clone(), key),
            handler: Arc::new(handler),
            profile,
            server: config.server,
            state_dir: config.state_dir,
            endpoints,
            current,
            ledger: Ledger::default(),
            deciding: JoinSet::new(),
            decision_tasks: HashMap::new(),
            backoff: Backoff::default(),
            revoked: None,
            outage: None,
        };
        let task = tokio::spawn(event_loop.run(command_rx, stop.clone()));
        Ok(Self {
            handle: DeviceHandle { commands },
            stop,
            task: Some(task),
        })
    }

    /// A handle for handing in OTPs and asking the status.
    pub fn handle(&self) -> DeviceHandle {
        self.handle.clone()
    }

    /// Waits until the device stops by itself: `Err(Error::Revoked)` when the
    /// server revoked it (its state directory then records it).
    pub async fn stopped(&mut self) -> Result<(), Error> {
        let Some(task) = self.task.as_mut() else {
            return Ok(());
        };
        let revoked = task.await.unwrap_or_default();
        self.task = None;
        match revoked {
            Some(message) => Err(Error::Revoked { message }),
            None => Ok(()),
        }
    }

    /// Stops the device: callers waiting for an outcome are told, decisions
    /// in progress are abandoned, the stream closes.
    pub async fn stop(mut self) -> Result<(), Error> {
        self.stop.cancel();
        self.stopped().await
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Whether a refusal says this device was revoked: nothing to retry.
pub(crate) fn is_revocation(status: &tonic::Status) -> bool {
    use tonic_types::StatusExt as _;
    status.code() == tonic::Code::PermissionDenied
        && status
            .get_details_error_info()
            .is_some_and(|info| info.reason == "DEVICE_REVOKED")
}

/// What a finished decision task returns.
type DecisionOutput = (String, Option<Answer>);

/// The event loop's state, apart from the link.
struct EventLoop<H> {
    profile: DeviceProfile,
    identity: Identity,
    handler: Arc<H>,
    /// The server list as configured (for messages).
    server: String,
    /// Where the enrollment lives (a revocation is recorded there).
    state_dir: std::path::PathBuf,
    /// The servers to connect to, and which one is tried next.
    endpoints: Vec<Endpoint>,
    current: usize,
    ledger: Ledger,
    /// One task per confirmation being decided; they outlive reconnects.
    deciding: JoinSet<DecisionOutput>,
    /// Which transaction each decision task decides, to deny if one panics.
    decision_tasks: HashMap<Id, String>,
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

impl<H: Handler> EventLoop<H> {
    /// Runs until `shutdown` fires, or the server revokes this device
    /// (then returns what it said).
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) -> Option<String> {
        let mut link = Link::Waiting(Instant::now());
        let mut attempt = 0u64;
        let mut prune = tokio::time::interval(Duration::from_secs(1));
        while self.revoked.is_none() {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(command) = commands.recv() => self.on_command(command, link.sender()).await,
                Some(joined) = self.deciding.join_next_with_id(), if !self.deciding.is_empty() => {
                    let (transaction_id, verdict) = match joined {
                        Ok((id, output)) => {
                            self.decision_tasks.remove(&id);
                            output
                        }
                        Err(error) => {
                            tracing::error!(%error, "a handler failed; denying");
                            let transaction_id = self.decision_tasks.remove(&error.id()).unwrap_or_default();
                            (transaction_id, Some(Answer::Deny(DenyReason::Policy)))
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
                            let span = tracing::info_span!("connection", server = %self.server, attempt);
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
            None => "the device is shutting down".to_owned(),
        };
        self.ledger.fail_waiters(&stopping);
        self.ledger.cancel_policies();
        self.deciding.shutdown().await;
        if let Some(message) = &self.revoked {
            credentials::mark_revoked(&self.state_dir, message);
            tracing::error!(%message, "this device was revoked; stopping (enroll it again)");
            self.handler.on_connection(&ConnectionState::Revoked {
                message: message.clone(),
            });
        }
        self.revoked
    }

    async fn on_established(
        &mut self,
        result: Result<Session, ConnectError>,
        attempt: u64,
    ) -> Link {
        let span = tracing::info_span!("connection", server = %self.server, attempt);
        match result {
            Ok(session) => {
                self.outage = None;
                span.in_scope(|| tracing::info!(user_id = %session.ready.user_id, "connected"));
                let server = self.endpoints[self.current].uri().to_string();
                self.handler
                    .on_connection(&ConnectionState::Connected { server });
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
                self.handler.on_connection(&ConnectionState::Disconnected {
                    reason: error.to_string(),
                });
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
                "the device cannot reach the server at {}: {why}; it keeps retrying — hand the \
                 code in again once its status says connected",
                self.server
            );
            self.ledger.fail_waiters(&message);
        }
    }

    /// The session ended: waiting OTPs go back to the queue and the next
    /// attempt is scheduled (after the server's delay when it asked for one).
    fn disconnected(
        &mut self,
        since: Instant,
        server_delay: Option<Duration>,
        reason: &str,
    ) -> Link {
        self.handler.on_connection(&ConnectionState::Disconnected {
            reason: reason.to_owned(),
        });
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
