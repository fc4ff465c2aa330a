//! Records to wire messages.

use assent_proto::v1;
use chrono::{DateTime, Utc};

use assent_proto::signing::{self, SignedVerdict};

use crate::domain::{Transaction, TransactionKind, TransactionState};
use crate::service::{DeviceView, SignedEvent, TransactionView};
use crate::store::ServerKeyRecord;

/// A wire timestamp.
pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or_default(),
    }
}

/// The wire state.
pub fn state(state: TransactionState) -> v1::TransactionState {
    match state {
        TransactionState::Pending => v1::TransactionState::Pending,
        TransactionState::Scanned => v1::TransactionState::Scanned,
        TransactionState::Accepted => v1::TransactionState::Accepted,
        TransactionState::Denied => v1::TransactionState::Denied,
        TransactionState::Expired => v1::TransactionState::Expired,
        TransactionState::Cancelled => v1::TransactionState::Cancelled,
        TransactionState::Failed => v1::TransactionState::Failed,
    }
}

/// The wire transaction (settled by the use case, so its state is current).
pub fn transaction(record: &Transaction) -> v1::Transaction {
    transaction_with_key(record, None)
}

/// The wire transaction with its evidence and latest event.
pub fn view(view: &TransactionView) -> (v1::Transaction, Option<v1::Event>) {
    (
        transaction_with_key(&view.transaction, view.device_public_key.as_ref()),
        view.last_event.clone().map(event),
    )
}

/// What the deciding device signed, with its public key when known.
fn evidence(record: &Transaction, device_key: Option<&[u8; 32]>) -> Option<v1::DecisionEvidence> {
    let answer = record.answer?;
    Some(v1::DecisionEvidence {
        application_id: record.application_id.to_string(),
        device_id: record.device_id.map(|d| d.to_string()).unwrap_or_default(),
        nonce: record.nonce.map(|n| n.to_vec()).unwrap_or_default(),
        decision: match answer.verdict {
            SignedVerdict::Accept => v1::Decision::Accept,
            SignedVerdict::Deny => v1::Decision::Deny,
        }
        .into(),
        reason: answer
            .reason
            .map(|r| r.as_str().to_owned())
            .unwrap_or_default(),
        display_hash: signing::display_hash(&record.message, &record.context).to_vec(),
        picked_number: answer.number.map(u32::from),
        device_public_key: device_key.map(|k| k.to_vec()).unwrap_or_default(),
        device_key_id: device_key.map(|k| signing::key_id(k)).unwrap_or_default(),
    })
}

fn transaction_with_key(record: &Transaction, device_key: Option<&[u8; 32]>) -> v1::Transaction {
    v1::Transaction {
        transaction_id: record.id.to_string(),
        kind: kind(record.kind).into(),
        state: state(record.state).into(),
        user_id: record
            .user_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        device_id: record.device_id.map(|d| d.to_string()).unwrap_or_default(),
        reason: record
            .reason
            .map(|r| r.as_str().to_owned())
            .unwrap_or_default(),
        message: record.message.clone(),
        context: record.context.clone(),
        created_at: Some(timestamp(record.created_at)),
        expires_at: Some(timestamp(record.expires_at)),
        completed_at: record.completed_at.map(timestamp),
        decision_signature: record.decision_signature.clone().unwrap_or_default(),
        number_matching: record.match_number.is_some(),
        binding: record.binding.clone().unwrap_or_default(),
        evidence: evidence(record, device_key),
    }
}

/// The wire kind.
pub fn kind(kind: TransactionKind) -> v1::TransactionKind {
    match kind {
        TransactionKind::Otp => v1::TransactionKind::Otp,
        TransactionKind::Push => v1::TransactionKind::Push,
    }
}

/// The wire device.
pub fn device(view: &DeviceView) -> v1::Device {
    let record = &view.record;
    v1::Device {
        device_id: record.id.to_string(),
        user_id: record.user_id.to_string(),
        name: record.name.clone(),
        revoked: record.is_revoked(),
        created_at: Some(timestamp(record.created_at)),
        last_seen_at: record.last_seen_at.map(timestamp),
        public_key: record.public_key.to_vec(),
        connected: view.is_connected,
    }
}

/// The wire event, with the server's signature.
pub fn event(signed: SignedEvent) -> v1::Event {
    let record = signed.record;
    v1::Event {
        cursor: u64::try_from(record.cursor).unwrap_or_default(),
        r#type: record.event_type.as_str().to_owned(),
        occurred_at: Some(timestamp(record.occurred_at)),
        transaction_id: record
            .transaction_id
            .map(|t| t.to_string())
            .unwrap_or_default(),
        user_id: record
            .user_id
            .map(|u| u.as_str().to_owned())
            .unwrap_or_default(),
        device_id: record.device_id.map(|d| d.to_string()).unwrap_or_default(),
        reason: record
            .reason
            .map(|r| r.as_str().to_owned())
            .unwrap_or_default(),
        fraud_reported: record.fraud_reported,
        binding: record.binding.unwrap_or_default(),
        application_id: signed.application_id.to_string(),
        key_id: signed.key_id.to_string(),
        signature: signed.signature.to_vec(),
        state: record
            .event_type
            .state()
            .map_or(v1::TransactionState::Unspecified, state)
            .into(),
    }
}

/// A wire server key.
pub fn server_key(record: &ServerKeyRecord) -> v1::ServerKey {
    v1::ServerKey {
        key_id: record.id.clone(),
        public_key: record.public_key.to_vec(),
        created_at: Some(timestamp(record.created_at)),
        retired_at: record.retired_at.map(timestamp),
    }
}

/// The confirmation request `device` receives for a transaction it holds.
pub fn confirmation(
    record: &Transaction,
    application_name: &str,
    request_id: u64,
) -> v1::ConfirmationRequest {
    v1::ConfirmationRequest {
        request_id,
        transaction_id: record.id.to_string(),
        application_id: record.application_id.to_string(),
        application_name: application_name.to_owned(),
        message: record.message.clone(),
        context: record.context.clone(),
        expires_at: Some(timestamp(record.expires_at)),
        nonce: record.nonce.map(|n| n.to_vec()).unwrap_or_default(),
        user_id: record
            .user_id
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        kind: kind(record.kind).into(),
        number_choices: record
            .number_choices
            .iter()
            .map(|&n| u32::from(n))
            .collect(),
    }
}
