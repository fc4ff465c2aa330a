//! The Assent device agent: holds an enrolled device key and answers login
//! confirmations for managed hardware.
//!
//! Where things live:
//! - [`config`]: [`AgentConfig`] and the built-in defaults.
//! - [`credentials`]: the enrollment on disk (`device.key`, `device.json`).
//! - `enrollment`: [`enroll`], the `Enroll` call with its proof of possession.
//! - `daemon`: [`run`], the event loop owning the server link (`daemon::link`),
//!   the policy tasks and the bookkeeping (`ledger`) of callers and
//!   transactions (OTP and push alike); `daemon::messages` reacts to server
//!   messages and commands.
//! - `connection`: endpoint, TLS and the challenge-response handshake;
//!   `backoff` schedules reconnects; `identity` signs hellos and decisions.
//! - [`policy`]: `accept | deny | prompt | exec:CMD`, the request as a policy
//!   sees it (`policy::confirmation`), number matching (`policy::number`) and
//!   the exec command's process group (`policy::exec::child`).
//! - [`control`]: the local Unix socket and its client ([`submit_otp`]).
//! - `otp`: OTP text parsing (base64/base64url → transaction id).
//! - `error`: [`AgentError`], the one error enum.
//!
//! The control socket protocol and the choices made where the specification
//! is silent are written down in `device-agent/README.md`.

pub mod config;
pub mod control;
pub mod credentials;
pub mod policy;
pub mod qr;

mod backoff;
mod connection;
mod daemon;
mod enrollment;
mod error;
mod identity;
mod ledger;
mod otp;

pub use config::AgentConfig;
pub use control::{DaemonStatus, OtpOutcome, daemon_status, submit_otp};
pub use daemon::run;
pub use enrollment::{Enrollment, enroll};
pub use error::AgentError;
pub use policy::Policy;
