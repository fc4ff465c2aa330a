//! How a handed-in OTP ended: the SDK's onSuccess / onError.

use serde::{Deserialize, Serialize};

/// The outcome of an OTP hand-in: `ok` only for `ACCEPTED`; `error` is set
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
    pub fn failed(transaction_id: Option<&str>, error: impl Into<String>) -> Self {
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
}
