//! One device's long-lived stream, whatever carries it: challenge → signed
//! hello → ready; then OTP submissions and decisions from the device,
//! notices from the notifier, and a heartbeat — until the device leaves, is
//! revoked, falls behind, or the server drains.
//!
//! The session never blocks on a device that stopped reading: every send
//! also watches the session's end and a send deadline, and a session that
//! must end but cannot hand its last word to a stalled stream resets that
//! stream alone (through [`SessionIo::reset`]) instead of waiting. Other
//! streams on the same connection — the device's own reconnect, other
//! devices behind a proxy, relying-party calls — never notice.
//! The session speaks [`FromDevice`] and [`ToDevice`], never the wire:
//! `grpc::device` decodes and encodes a tonic stream for it.

mod inbound;
mod messages;
mod run;

use std::time::Duration;

use futures::stream::BoxStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use messages::{FromDevice, ToDevice};
pub use run::DeviceSession;

use crate::service::ServiceError;

/// How long a new stream may take to answer the challenge.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a connected device's `last_seen` is refreshed and its
/// revocation re-checked.
pub const HEARTBEAT: Duration = Duration::from_secs(30);
/// How long an ending session waits for its last word to leave before it
/// resets its stream.
pub const CLOSE_GRACE: Duration = Duration::from_millis(400);
/// Messages a device may send per second on its stream, on average, and in
/// a burst: above what one busy kiosk or the benchmark's devices send (two
/// messages per login, a few hundred logins a second), below a flood.
/// Past it the stream ends with RESOURCE_EXHAUSTED.
pub const MESSAGES_PER_SECOND: f64 = 2000.0;
/// See [`MESSAGES_PER_SECOND`].
pub const MESSAGE_BURST: u32 = 2000;
/// Suggested delay before an agent reconnects after GoAway.
pub const RECONNECT_AFTER_MS: u32 = 500;

/// What the session sends: messages, or the error that ends the stream.
/// Boxed, so the queue's first block (32 slots, allocated with the channel
/// and kept while the session idles) is 32 pointers, not 32 errors.
pub type Outbound = mpsc::Sender<Box<Result<ToDevice, ServiceError>>>;

/// The stream a session runs over, as the transport hands it.
pub struct SessionIo {
    /// Messages from the device; an error ends the session with that error.
    pub inbound: BoxStream<'static, Result<FromDevice, ServiceError>>,
    /// Messages to the device.
    pub outbound: Outbound,
    /// Cancelling it resets this stream alone (never its connection).
    pub reset: CancellationToken,
    /// Fires when the server drains.
    pub shutdown: CancellationToken,
    /// How long one message may wait for a device that does not read
    /// before the session gives up on it.
    pub send_deadline: Duration,
}
