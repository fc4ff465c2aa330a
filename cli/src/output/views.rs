//! The JSON shapes the command line prints, one per API object. Field names
//! are a contract with scripts: empty server strings become `null`, states
//! use their SPEC names, timestamps are RFC 3339 UTC strings.

use std::collections::BTreeMap;

use assent_proto::v1::{
    CreateEnrollmentResponse, CreateOtpAuthenticationResponse, Device, Event, Transaction,
};
use chrono::{DateTime, SecondsFormat};
use prost_types::Timestamp;
use serde::Serialize;

/// `assent enrollment create`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnrollmentView {
    /// The single-use enrollment code.
    pub code: String,
    /// When the code stops working.
    pub expires_at: Option<String>,
    /// The user the code enrolls a device for.
    pub user_id: Option<String>,
}

impl From<&CreateEnrollmentResponse> for EnrollmentView {
    fn from(response: &CreateEnrollmentResponse) -> Self {
        Self {
            code: response.code.clone(),
            expires_at: rfc3339(response.expires_at.as_ref()),
            user_id: non_empty(&response.user_id),
        }
    }
}

/// `assent login otp`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoginView {
    /// The new transaction.
    pub transaction_id: String,
    /// The one-time password.
    pub otp: String,
    /// When the OTP stops working.
    pub expires_at: Option<String>,
    /// The text to encode in the login page's QR code.
    pub qr_payload: String,
}

impl From<&CreateOtpAuthenticationResponse> for LoginView {
    fn from(response: &CreateOtpAuthenticationResponse) -> Self {
        Self {
            transaction_id: response.transaction_id.clone(),
            otp: response.otp.clone(),
            expires_at: rfc3339(response.expires_at.as_ref()),
            // An older server may leave it empty; the OTP itself is what agents accept.
            qr_payload: non_empty(&response.qr_payload).unwrap_or_else(|| response.otp.clone()),
        }
    }
}

/// `assent tx get|wait|cancel`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransactionView {
    /// The transaction's id.
    pub transaction_id: String,
    /// SPEC state name: PENDING, SCANNED, ACCEPTED, DENIED, EXPIRED, CANCELLED or FAILED.
    pub state: &'static str,
    /// The user, once known.
    pub user_id: Option<String>,
    /// The bound device, once scanned.
    pub device_id: Option<String>,
    /// Why it was denied or failed.
    pub reason: Option<String>,
    /// The text shown on the device.
    pub message: String,
    /// Extra facts shown on the device.
    pub context: BTreeMap<String, String>,
    /// When it was created.
    pub created_at: Option<String>,
    /// When it stops being answerable.
    pub expires_at: Option<String>,
    /// When it reached its terminal state.
    pub completed_at: Option<String>,
}

impl From<&Transaction> for TransactionView {
    fn from(tx: &Transaction) -> Self {
        Self {
            transaction_id: tx.transaction_id.clone(),
            state: tx.state().spec_name(),
            user_id: non_empty(&tx.user_id),
            device_id: non_empty(&tx.device_id),
            reason: non_empty(&tx.reason),
            message: tx.message.clone(),
            context: tx.context.clone(),
            created_at: rfc3339(tx.created_at.as_ref()),
            expires_at: rfc3339(tx.expires_at.as_ref()),
            completed_at: rfc3339(tx.completed_at.as_ref()),
        }
    }
}

/// One line of `assent events`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventView {
    /// Position in the event log; resume with `--after` this.
    pub cursor: u64,
    /// `transaction.accepted`, `device.enrolled`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The transaction concerned (null for device events).
    pub transaction_id: Option<String>,
    /// The user concerned, when known.
    pub user_id: Option<String>,
    /// The device concerned, when known.
    pub device_id: Option<String>,
    /// The reason of a denied or failed outcome.
    pub reason: Option<String>,
    /// When it happened.
    pub occurred_at: Option<String>,
}

impl From<&Event> for EventView {
    fn from(event: &Event) -> Self {
        Self {
            cursor: event.cursor,
            kind: event.r#type.clone(),
            transaction_id: non_empty(&event.transaction_id),
            user_id: non_empty(&event.user_id),
            device_id: non_empty(&event.device_id),
            reason: non_empty(&event.reason),
            occurred_at: rfc3339(event.occurred_at.as_ref()),
        }
    }
}

/// `assent devices list|revoke`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceView {
    /// The device's id.
    pub device_id: String,
    /// The user it belongs to.
    pub user_id: String,
    /// The name it gave itself.
    pub name: String,
    /// Whether it was revoked.
    pub revoked: bool,
    /// When it enrolled.
    pub created_at: Option<String>,
    /// When it last connected (null if never).
    pub last_seen_at: Option<String>,
}

impl From<&Device> for DeviceView {
    fn from(device: &Device) -> Self {
        Self {
            device_id: device.device_id.clone(),
            user_id: device.user_id.clone(),
            name: device.name.clone(),
            revoked: device.revoked,
            created_at: rfc3339(device.created_at.as_ref()),
            last_seen_at: rfc3339(device.last_seen_at.as_ref()),
        }
    }
}

/// `None` for the empty string, which proto3 uses for "not set".
pub fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// A protobuf timestamp as RFC 3339 UTC text (`2025-01-31T12:00:00Z`); `None` when unset or out of range.
pub fn rfc3339(timestamp: Option<&Timestamp>) -> Option<String> {
    let timestamp = timestamp?;
    let nanos = u32::try_from(timestamp.nanos).ok()?;
    let time = DateTime::from_timestamp(timestamp.seconds, nanos)?;
    Some(time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

#[cfg(test)]
mod tests {
    use assent_proto::v1::TransactionState;
    use serde_json::json;

    use super::*;

    fn at(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    #[test]
    fn transaction_with_empty_fields_renders_nulls() {
        let tx = Transaction {
            transaction_id: "t-1".into(),
            state: TransactionState::Pending as i32,
            message: "Log in?".into(),
            expires_at: at(1_700_000_000),
            ..Transaction::default()
        };
        let value = serde_json::to_value(TransactionView::from(&tx)).unwrap();
        assert_eq!(value["transaction_id"], "t-1");
        assert_eq!(value["state"], "PENDING");
        assert_eq!(value["user_id"], json!(null));
        assert_eq!(value["device_id"], json!(null));
        assert_eq!(value["reason"], json!(null));
        assert_eq!(value["completed_at"], json!(null));
        assert_eq!(value["expires_at"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn denied_transaction_keeps_its_reason_and_device() {
        let tx = Transaction {
            transaction_id: "t-2".into(),
            state: TransactionState::Denied as i32,
            user_id: "alice".into(),
            device_id: "d-1".into(),
            reason: "not_me".into(),
            ..Transaction::default()
        };
        let view = TransactionView::from(&tx);
        assert_eq!(view.state, "DENIED");
        assert_eq!(view.user_id.as_deref(), Some("alice"));
        assert_eq!(view.device_id.as_deref(), Some("d-1"));
        assert_eq!(view.reason.as_deref(), Some("not_me"));
    }

    #[test]
    fn every_state_has_its_spec_name() {
        let names: Vec<_> = [
            TransactionState::Pending,
            TransactionState::Scanned,
            TransactionState::Accepted,
            TransactionState::Denied,
            TransactionState::Expired,
            TransactionState::Cancelled,
            TransactionState::Failed,
        ]
        .into_iter()
        .map(|state| {
            let tx = Transaction {
                state: state as i32,
                ..Transaction::default()
            };
            TransactionView::from(&tx).state
        })
        .collect();
        let expected = [
            "PENDING",
            "SCANNED",
            "ACCEPTED",
            "DENIED",
            "EXPIRED",
            "CANCELLED",
            "FAILED",
        ];
        assert_eq!(names, expected);
    }

    #[test]
    fn event_uses_type_key_numeric_cursor_and_nulls() {
        let event = Event {
            cursor: 42,
            r#type: "device.enrolled".into(),
            occurred_at: Some(Timestamp {
                seconds: 0,
                nanos: 500_000_000,
            }),
            user_id: "alice".into(),
            device_id: "d-1".into(),
            ..Event::default()
        };
        let value = serde_json::to_value(EventView::from(&event)).unwrap();
        assert_eq!(
            value,
            json!({
                "cursor": 42,
                "type": "device.enrolled",
                "transaction_id": null,
                "user_id": "alice",
                "device_id": "d-1",
                "reason": null,
                "occurred_at": "1970-01-01T00:00:00.500Z",
            })
        );
    }

    #[test]
    fn unset_or_invalid_timestamps_are_none() {
        assert_eq!(rfc3339(None), None);
        assert_eq!(
            rfc3339(Some(&Timestamp {
                seconds: 0,
                nanos: -1
            })),
            None
        );
    }

    #[test]
    fn login_falls_back_to_the_otp_as_qr_payload() {
        let response = CreateOtpAuthenticationResponse {
            transaction_id: "t".into(),
            otp: "b3Rw".into(),
            ..CreateOtpAuthenticationResponse::default()
        };
        assert_eq!(LoginView::from(&response).qr_payload, "b3Rw");
    }
}
