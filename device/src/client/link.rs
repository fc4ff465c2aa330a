//! The state of the daemon's link to the server: waiting to retry,
//! connecting, or ready with an authenticated stream.

use std::future::Future;
use std::pin::Pin;

use assent_proto::v1::ServerMessage;
use tokio::time::Instant;
use tonic::Streaming;

use crate::connection::{ConnectError, Session, SessionSender};

/// A connection attempt in flight.
pub(super) type Connecting = Pin<Box<dyn Future<Output = Result<Session, ConnectError>> + Send>>;

/// The state of the link to the server.
pub(super) enum Link {
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
pub(super) enum LinkEvent {
    RetryDue,
    Established(Result<Session, ConnectError>),
    Received(Result<Option<ServerMessage>, tonic::Status>),
}

impl Link {
    /// Waits for the link's next event; cancel-safe, so `select!` may drop it.
    pub(super) async fn next_event(&mut self) -> LinkEvent {
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
    pub(super) fn sender(&self) -> Option<&SessionSender> {
        match self {
            Self::Ready { sender, .. } => Some(sender),
            _ => None,
        }
    }
}
