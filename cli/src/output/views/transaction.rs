//! The views of transactions and of the events that report on them.

use std::collections::BTreeMap;

use assent_proto::v1::{Event, Transaction, TransactionKind};
use serde::Serialize;

use super::{non_empty, rfc3339};

/// `assent tx get|wait|cancel`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransactionView {
    /// The transaction's id.
    pub transaction_id: String,
    /// SPEC state name: PENDING, SCANNED, ACCEPTED, DENIED, EXPIRED, CANCELLED or FAILED.
    pub state: &'static str,
    /// How it reaches a device: `OTP` or `PUSH` (null if the server did not say).
    pub kind: Option<&'static str>,
    /// Whether the device had to pick the number shown on the login page.
    pub number_matching: bool,
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
            kind: kind_name(tx.kind()),
            number_matching: tx.number_matching,
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

/// The contract name of a transaction kind; `None` for the unset value.
fn kind_name(kind: TransactionKind) -> Option<&'static str> {
    match kind {
        TransactionKind::Unspecified => None,
        TransactionKind::Otp => Some("OTP"),
        TransactionKind::Push => Some("PUSH"),
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
    /// True on a denial whose reason is `not_me`: the user reports someone else tried to log in.
    pub fraud_reported: bool,
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
            fraud_reported: event.fraud_reported,
        }
    }
}

#[cfg(test)]
mod tests {
    use assent_proto::v1::TransactionState;
    use prost_types::Timestamp;
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
        assert_eq!(value["kind"], json!(null));
        assert_eq!(value["number_matching"], false);
        assert_eq!(value["user_id"], json!(null));
        assert_eq!(value["device_id"], json!(null));
        assert_eq!(value["reason"], json!(null));
        assert_eq!(value["completed_at"], json!(null));
        assert_eq!(value["expires_at"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn transaction_kind_and_number_matching_are_shown() {
        let push = Transaction {
            kind: TransactionKind::Push as i32,
            number_matching: true,
            ..Transaction::default()
        };
        let view = TransactionView::from(&push);
        assert_eq!(view.kind, Some("PUSH"));
        assert!(view.number_matching);
        let otp = Transaction {
            kind: TransactionKind::Otp as i32,
            ..Transaction::default()
        };
        assert_eq!(TransactionView::from(&otp).kind, Some("OTP"));
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
                "fraud_reported": false,
            })
        );
    }

    #[test]
    fn fraud_report_is_carried() {
        let event = Event {
            r#type: "transaction.denied".into(),
            reason: "not_me".into(),
            fraud_reported: true,
            ..Event::default()
        };
        assert!(EventView::from(&event).fraud_reported);
    }
}
