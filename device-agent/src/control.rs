//! The local control socket (`<state-dir>/agent.sock`, mode 0600, unless
//! `--socket PATH` / `--socket-group GROUP` say otherwise: then mode 0660
//! with that group) through which `assent-agent otp|scan|status` talk to the
//! daemon: one JSON object per line. A request `{"otp":"…"}` gets exactly one [`OtpOutcome`] line once the
//! outcome is known; `{"status":true}` gets a [`DaemonStatus`] line. Closing
//! the connection before the answer withdraws the caller's interest.

mod client;
mod group;
mod listener;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use assent_device::OtpOutcome;
use assent_device::otp::Otp;
pub use client::{daemon_status, daemon_status_at, submit_otp, submit_otp_at};
pub use group::{SocketGroup, UnknownGroup};
pub(crate) use listener::{DaemonTarget, bind, serve};

/// File name of the control socket inside the state directory.
pub const SOCKET_FILE: &str = "agent.sock";

/// Where the daemon of `state_dir` listens.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_FILE)
}

/// The daemon's answer to `{"status":true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// Always true: the daemon answered.
    pub ok: bool,
    /// Whether the daemon holds an authenticated stream to the server.
    pub connected: bool,
    /// The enrolled device id.
    pub device_id: String,
    /// The user the device belongs to.
    pub user_id: String,
    /// The application's display name.
    pub application_name: String,
    /// The server the daemon connects to.
    pub server: String,
    /// The decision policy in force.
    pub policy: String,
}

/// What the control socket hands requests to: the daemon's device, or a
/// test's stand-in.
pub(crate) trait Target: Clone + Send + Sync + 'static {
    /// Hands in a well-formed OTP and waits for its outcome; dropping the
    /// future withdraws the caller's interest.
    fn submit(&self, otp: Otp) -> impl std::future::Future<Output = OtpOutcome> + Send;
    /// The daemon's status; `None` once it is shutting down.
    fn status(&self) -> impl std::future::Future<Output = Option<DaemonStatus>> + Send;
}

/// A request line; exactly one field is expected.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ControlRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    otp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<bool>,
}

#[cfg(test)]
mod socket_tests;

#[cfg(test)]
mod properties {
    //! The control socket's request line, whatever bytes arrive, is a
    //! request or a refusal, never a panic.

    use proptest::prelude::*;

    proptest! {
        /// Hostile bytes never panic the parser: each line is a request or
        /// a refusal that says it is invalid.
        #[test]
        fn any_request_line_parses_or_is_refused(line in prop::collection::vec(any::<u8>(), 0..300)) {
            let is_object = line.first() == Some(&b'{');
            match super::listener::parse_request(&line) {
                // An object with neither field parses too (the listener
                // refuses it as an unknown request).
                Ok(request) => prop_assert!(request.otp.is_some() || request.status.is_some() || is_object),
                Err(refusal) => prop_assert!(refusal.starts_with("invalid request: "), "{}", refusal),
            }
        }

        /// A well-formed line is read as exactly what it says, whatever
        /// follows its newline.
        #[test]
        fn a_well_formed_line_is_read_as_written(
            otp in "[A-Za-z0-9+/=_-]{0,80}",
            trailing in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut line = format!("{{\"otp\":\"{otp}\"}}\n").into_bytes();
            line.extend(trailing);
            let request = super::listener::parse_request(&line);
            prop_assert_eq!(request.ok().and_then(|r| r.otp), Some(otp));
            let status = super::listener::parse_request(b"{\"status\":true}");
            prop_assert_eq!(status.ok().and_then(|r| r.status), Some(true));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_json_has_every_field_even_when_null() {
        let json = serde_json::to_value(OtpOutcome::failed(None, "x")).unwrap();
        for field in ["ok", "state", "transaction_id", "reason", "error"] {
            assert!(json.get(field).is_some(), "{field}");
        }
        assert!(json["state"].is_null());
    }
}
