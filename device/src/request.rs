//! A confirmation request as a handler sees it, parsed from the wire
//! message once; its JSON form is what the agent's `exec:` command reads.

use std::collections::BTreeMap;
use std::time::Duration;

use assent_proto::v1::{ConfirmationRequest, TransactionKind};
use chrono::{DateTime, Utc};
use serde::Serialize;

pub use crate::number::{InvalidChoices, InvalidPick, NumberChoices};

/// Why a confirmation request cannot be put to the policy (it is denied with
/// reason `policy` instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    /// A transaction kind this agent does not know.
    #[error("unknown transaction kind {0}")]
    UnknownKind(i32),
    /// Number choices that cannot be offered.
    #[error("invalid number choices: {0}")]
    Choices(#[from] InvalidChoices),
}

/// How the request reached the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Kind {
    /// The device handed in an OTP.
    Otp,
    /// The server pushed the request to the user's devices.
    Push,
}

impl Kind {
    /// The kind named by the wire value; unspecified means OTP (servers
    /// older than push login send no kind).
    fn from_wire(value: i32) -> Result<Self, InvalidRequest> {
        match TransactionKind::try_from(value) {
            Ok(TransactionKind::Unspecified | TransactionKind::Otp) => Ok(Self::Otp),
            Ok(TransactionKind::Push) => Ok(Self::Push),
            Err(_) => Err(InvalidRequest::UnknownKind(value)),
        }
    }
}

/// A confirmation request as a handler sees it (serialised, the JSON the
/// agent's `exec:` command reads on stdin).
#[derive(Debug, Clone, Serialize)]
pub struct Request {
    /// The transaction to decide on.
    pub transaction_id: String,
    /// OTP or push.
    pub kind: Kind,
    /// The application's id.
    pub application_id: String,
    /// The application's display name.
    pub application_name: String,
    /// The user the device belongs to.
    pub user_id: String,
    /// The text to show.
    pub message: String,
    /// Extra facts to show, in key order.
    pub context: BTreeMap<String, String>,
    /// When the request stops being answerable, if the server said.
    pub expires_at: Option<DateTime<Utc>>,
    /// The numbers to pick from under number matching (empty otherwise).
    pub number_choices: NumberChoices,
}

impl Request {
    /// Parses the wire request.
    pub(crate) fn from_request(request: &ConfirmationRequest) -> Result<Self, InvalidRequest> {
        Ok(Self {
            transaction_id: request.transaction_id.clone(),
            kind: Kind::from_wire(request.kind)?,
            application_id: request.application_id.clone(),
            application_name: request.application_name.clone(),
            user_id: request.user_id.clone(),
            message: request.message.clone(),
            context: request.context.clone(),
            expires_at: request.expires_at.and_then(|at| {
                DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).unwrap_or(0))
            }),
            number_choices: NumberChoices::parse(&request.number_choices)?,
        })
    }

    /// Time left until `expires_at`, zero once it has passed.
    pub fn time_left(&self) -> Option<Duration> {
        self.expires_at
            .map(|expires_at| (expires_at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_confirmation() -> Request {
        Request {
            transaction_id: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
            kind: Kind::Otp,
            application_id: "app-1".into(),
            application_name: "Example Shop".into(),
            user_id: "alice".into(),
            message: "Sign in from Firefox".into(),
            context: BTreeMap::from([("ip".to_owned(), "192.0.2.1".to_owned())]),
            expires_at: Some(chrono::Utc::now() + chrono::Duration::seconds(60)),
            number_choices: NumberChoices::default(),
        }
    }

    fn wire() -> ConfirmationRequest {
        ConfirmationRequest {
            transaction_id: "tx".into(),
            kind: TransactionKind::Push.into(),
            number_choices: vec![12, 45, 78],
            expires_at: Some(prost_types::Timestamp {
                seconds: 1_900_000_000,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_wire_request_is_parsed_once() {
        let confirmation = Request::from_request(&wire()).unwrap();
        assert_eq!(confirmation.kind, Kind::Push);
        assert!(confirmation.number_choices.contains(45));
        assert_eq!(
            confirmation.expires_at.map(|at| at.timestamp()),
            Some(1_900_000_000)
        );
    }

    #[test]
    fn an_unspecified_kind_is_an_otp_and_an_unknown_one_is_refused() {
        let unspecified = ConfirmationRequest { kind: 0, ..wire() };
        let confirmation = Request::from_request(&unspecified).unwrap();
        assert_eq!(confirmation.kind, Kind::Otp);
        let unknown = ConfirmationRequest { kind: 7, ..wire() };
        assert_eq!(
            Request::from_request(&unknown).err(),
            Some(InvalidRequest::UnknownKind(7))
        );
    }

    #[test]
    fn malformed_choices_are_refused() {
        let request = ConfirmationRequest {
            number_choices: vec![12, 12, 78],
            ..wire()
        };
        assert_eq!(
            Request::from_request(&request).err(),
            Some(InvalidRequest::Choices(InvalidChoices::Duplicate(12)))
        );
    }

    #[test]
    fn exec_input_has_the_documented_fields() {
        let json = serde_json::to_value(sample_confirmation()).unwrap();
        for field in [
            "transaction_id",
            "kind",
            "application_id",
            "application_name",
            "user_id",
            "message",
            "context",
            "expires_at",
            "number_choices",
        ] {
            assert!(json.get(field).is_some(), "{field}");
        }
        assert_eq!(json["context"]["ip"], "192.0.2.1");
        assert_eq!(json["kind"], "OTP");
        assert_eq!(json["number_choices"], serde_json::json!([]));
        let push = Request::from_request(&wire()).unwrap();
        let json = serde_json::to_value(push).unwrap();
        assert_eq!(json["kind"], "PUSH");
        assert_eq!(json["number_choices"], serde_json::json!([12, 45, 78]));
    }
}
