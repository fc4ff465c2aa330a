//! The host app's side: a [`Handler`] is asked about every confirmation
//! request and told what happens to requests and to the connection.

use std::future::Future;

use tokio_util::sync::CancellationToken;

use crate::answer::Answer;
use crate::request::Request;

/// Fires when the server withdraws a request while the handler is deciding
/// (cancelled by the relying party, expired, answered on another device,
/// device revoked). The SDK stops waiting for the handler at once either
/// way; a handler that shows a dialog uses it to close the dialog.
#[derive(Debug, Clone, Default)]
pub struct Withdrawn(pub(crate) CancellationToken);

impl From<CancellationToken> for Withdrawn {
    /// A withdrawal signal that fires when `token` is cancelled (for a
    /// host's own tests of its handler).
    fn from(token: CancellationToken) -> Self {
        Self(token)
    }
}

impl Withdrawn {
    /// Waits until the request is withdrawn.
    pub async fn wait(&self) {
        self.0.cancelled().await;
    }

    /// Whether the request has been withdrawn.
    pub fn is_withdrawn(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// The state of the connection to the server, as reported to
/// [`Handler::on_connection`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Authenticated to the server: pushes arrive, OTPs go out.
    Connected {
        /// The server URL of this session.
        server: String,
    },
    /// Not connected; the SDK retries with back-off.
    Disconnected {
        /// Why, in words.
        reason: String,
    },
    /// The server revoked this device: the SDK stops (enroll again).
    Revoked {
        /// The server's words.
        message: String,
    },
}

/// Implemented by the host app: decides on confirmation requests and hears
/// what happens. Only [`Handler::confirm`] is required.
///
/// ```
/// use assent_device::{Answer, DenyReason, Handler, Request, Withdrawn};
///
/// /// Accepts requests from one application, reports everything else as fraud.
/// struct OnlyShop;
///
/// impl Handler for OnlyShop {
///     async fn confirm(&self, request: Request, _withdrawn: Withdrawn) -> Answer {
///         if request.application_name == "Example Shop" && !request.number_choices.is_offered() {
///             Answer::ACCEPT
///         } else {
///             Answer::Deny(DenyReason::NotMe)
///         }
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Decides on one confirmation request (the SDK calls it once per
    /// transaction, also for a request re-sent after a reconnect). The
    /// answer is signed with the device key and sent; an answer that does
    /// not pick one of the offered numbers is sent as a denial (`policy`).
    fn confirm(
        &self,
        request: Request,
        withdrawn: Withdrawn,
    ) -> impl Future<Output = Answer> + Send;

    /// A request this device held was withdrawn by the server; `reason` is
    /// the server's word (`cancelled`, `expired`, `answered_elsewhere`,
    /// `device_revoked`, …).
    fn on_withdrawn(&self, transaction_id: &str, reason: &str) {
        let _ = (transaction_id, reason);
    }

    /// The server's verdict on a decision this device sent: the
    /// transaction's final state (`ACCEPTED`, `DENIED`, …) and whether this
    /// device's decision was the one applied.
    fn on_decided(&self, transaction_id: &str, state: &str, applied: bool) {
        let _ = (transaction_id, state, applied);
    }

    /// The connection changed state.
    fn on_connection(&self, state: &ConnectionState) {
        let _ = state;
    }
}
