//! The local control socket (`<state-dir>/agent.sock`, mode 0600) through
//! which `assent-agent otp|status` talk to the daemon: one JSON object per
//! line. A request `{"otp":"…"}` gets exactly one [`OtpOutcome`] line once the
//! outcome is known; `{"status":true}` gets a [`DaemonStatus`] line. Closing
//! the connection before the answer withdraws the caller's interest.

mod client;
mod listener;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

pub use client::{daemon_status, submit_otp};
pub(crate) use listener::{bind, serve};

use crate::otp::Otp;

/// File name of the control socket inside the state directory.
pub const SOCKET_FILE: &str = "agent.sock";

/// Where the daemon of `state_dir` listens.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_FILE)
}

/// The answer to an OTP hand-in: `ok` only for `ACCEPTED`; `error` is set
/// when the OTP never led to a decision (malformed, refused, unreachable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtpOutcome {
    /// True only when the login was accepted.
    pub ok: bool,
    /// The transaction's state (`ACCEPTED`, `DENIED`, `EXPIRED`, `CANCELLED`, `FAILED`).
    pub state: Option<String>,
    /// The transaction the OTP belonged to, when known.
    pub transaction_id: Option<String>,
    /// The reason stored with a denial or given with a cancellation.
    pub reason: Option<String>,
    /// Why there is no outcome state.
    pub error: Option<String>,
}

impl OtpOutcome {
    /// A transaction that reached `state`.
    pub(crate) fn finished(state: &str, transaction_id: &str, reason: &str) -> Self {
        Self {
            ok: state == "ACCEPTED",
            state: Some(state.to_owned()),
            transaction_id: Some(transaction_id.to_owned()),
            reason: (!reason.is_empty()).then(|| reason.to_owned()),
            error: None,
        }
    }

    /// A hand-in that failed without a transaction outcome.
    pub(crate) fn failed(transaction_id: Option<&str>, error: impl Into<String>) -> Self {
        Self {
            ok: false,
            state: None,
            transaction_id: transaction_id.map(str::to_owned),
            reason: None,
            error: Some(error.into()),
        }
    }

    /// One line for a person, e.g. `accepted: logged in to Example Shop` or
    /// `denied (not_me)`.
    pub fn summary(&self, application_name: Option<&str>) -> String {
        if let Some(error) = &self.error {
            return format!("error: {error}");
        }
        let state = self.state.as_deref().unwrap_or("UNKNOWN");
        if self.ok {
            return format!(
                "accepted: logged in to {}",
                application_name.unwrap_or("the application")
            );
        }
        let word = state.to_ascii_lowercase();
        match &self.reason {
            Some(reason) if reason != &word => format!("{word} ({reason})"),
            _ => word,
        }
    }
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

/// What a control connection asks of the daemon's event loop.
#[derive(Debug)]
pub(crate) enum ControlCommand {
    /// Hand in a well-formed OTP and report its outcome.
    SubmitOtp {
        /// The OTP.
        otp: Otp,
        /// Receives the outcome; closed when the caller hung up.
        reply: oneshot::Sender<OtpOutcome>,
    },
    /// Report the daemon's state.
    Status {
        /// Receives the status.
        reply: oneshot::Sender<DaemonStatus>,
    },
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

    use super::ControlRequest;

    proptest! {
        #[test]
        fn any_request_line_parses_or_is_refused(line in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            r#"\{"(otp|status)": ?("[^"]{0,80}"|true|false|null|[0-9]{1,5})\}"#.prop_map(String::into_bytes),
        ]) {
            let _ = serde_json::from_slice::<ControlRequest>(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_accepted_is_ok() {
        assert!(OtpOutcome::finished("ACCEPTED", "t", "").ok);
        let denied = OtpOutcome::finished("DENIED", "t", "not_me");
        assert!(!denied.ok);
        assert_eq!(denied.reason.as_deref(), Some("not_me"));
        assert_eq!(OtpOutcome::finished("EXPIRED", "t", "").reason, None);
    }

    #[test]
    fn summaries_read_as_documented() {
        let accepted = OtpOutcome::finished("ACCEPTED", "t", "");
        assert_eq!(
            accepted.summary(Some("Shop")),
            "accepted: logged in to Shop"
        );
        assert_eq!(
            OtpOutcome::finished("DENIED", "t", "not_me").summary(None),
            "denied (not_me)"
        );
        assert_eq!(
            OtpOutcome::finished("CANCELLED", "t", "expired").summary(None),
            "cancelled (expired)"
        );
        assert_eq!(
            OtpOutcome::finished("EXPIRED", "t", "").summary(None),
            "expired"
        );
        let failed = OtpOutcome::failed(None, "invalid OTP (malformed)");
        assert_eq!(failed.summary(None), "error: invalid OTP (malformed)");
    }

    #[test]
    fn outcome_json_has_every_field_even_when_null() {
        let json = serde_json::to_value(OtpOutcome::failed(None, "x")).unwrap();
        for field in ["ok", "state", "transaction_id", "reason", "error"] {
            assert!(json.get(field).is_some(), "{field}");
        }
        assert!(json["state"].is_null());
    }
}
