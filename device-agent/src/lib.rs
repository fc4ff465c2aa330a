//! The Assent device agent: a daemon for managed hardware (kiosks, laptops,
//! terminals) that hosts one enrollment of the `assent-device` SDK. The SDK
//! owns everything that speaks to the server; the daemon adds what a
//! managed machine needs around it.
//!
//! Where things live:
//! - [`config`]: [`AgentConfig`] and the built-in defaults.
//! - `daemon`: [`run`] — starts the SDK's device with the configured
//!   policy as its handler, serves the control socket, stops on shutdown or
//!   revocation.
//! - [`policy`]: `accept | deny | prompt | desktop | exec:CMD` as an SDK
//!   handler ([`policy::PolicyHandler`]); the prompt on the terminal
//!   (`policy::prompt`), the desktop notification (`policy::desktop`) and
//!   the process group of a command or `notify-send` (`policy::exec::child`).
//! - [`control`]: the local Unix socket (its path and group configurable)
//!   and its client ([`submit_otp`]).
//! - `service_manager`: systemd's `sd_notify` (readiness, watchdog,
//!   stopping) for `Type=notify` units.
//!
//! Enrollment, credentials, QR images and the connection are the SDK's
//! ([`assent_device`]), re-exported here where the command line uses them.
//! The control socket protocol and the choices made where the specification
//! is silent are written down in `device-agent/README.md`.

pub mod config;
pub mod control;
pub mod policy;

mod daemon;
mod service_manager;

pub use assent_device::{Enrollment, OtpOutcome, credentials, qr};
pub use config::AgentConfig;
pub use control::{
    DaemonStatus, SocketGroup, daemon_status, daemon_status_at, submit_otp, submit_otp_at,
};
pub use daemon::run;
pub use policy::Policy;

/// The agent's errors are the SDK's (enrollment, storage, connection) plus
/// the daemon's own (policy text, control socket).
pub use assent_device::Error as AgentError;

/// Enrolls the agent's device with `code` under `device_name` (see
/// [`assent_device::enroll`]).
pub async fn enroll(
    config: &AgentConfig,
    code: &str,
    device_name: &str,
    force: bool,
) -> Result<Enrollment, AgentError> {
    assent_device::enroll(&config.device(), code, device_name, force).await
}
