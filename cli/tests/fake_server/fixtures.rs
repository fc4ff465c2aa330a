//! The canned objects the fake server hands out: transactions, devices and
//! events, each with the quirks the tests look for.

use std::collections::BTreeMap;

use assent_proto::v1::{Device, Event, Transaction, TransactionKind, TransactionState};
use prost_types::Timestamp;

use super::{TX_DENIED, TX_PENDING};

/// A whole-second timestamp.
pub fn at(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

/// An OTP transaction; `user_id` is set once a device is bound.
pub fn transaction(id: &str, state: TransactionState, device: &str, reason: &str) -> Transaction {
    Transaction {
        transaction_id: id.to_owned(),
        kind: TransactionKind::Otp as i32,
        state: state as i32,
        user_id: if device.is_empty() {
            String::new()
        } else {
            "alice".to_owned()
        },
        device_id: device.to_owned(),
        reason: reason.to_owned(),
        message: "Log in?".to_owned(),
        context: BTreeMap::new(),
        created_at: at(1_700_000_000),
        expires_at: at(1_700_000_120),
        ..Transaction::default()
    }
}

/// An open push transaction for alice, with number matching.
pub fn push_transaction(id: &str) -> Transaction {
    Transaction {
        kind: TransactionKind::Push as i32,
        user_id: "alice".to_owned(),
        number_matching: true,
        ..transaction(id, TransactionState::Pending, "", "")
    }
}

/// Alice's devices: `d-1` is active, connected and was seen a minute after
/// enrolling; `d-2` is revoked and never connected. `None` for other ids.
pub fn device(id: &str) -> Option<Device> {
    let base = Device {
        device_id: id.to_owned(),
        user_id: "alice".to_owned(),
        name: "laptop".to_owned(),
        revoked: false,
        created_at: at(1_700_000_000),
        last_seen_at: None,
        public_key: vec![0; 32],
        connected: false,
    };
    match id {
        "d-1" => Some(Device {
            last_seen_at: at(1_700_000_060),
            connected: true,
            ..base
        }),
        "d-2" => Some(Device {
            revoked: true,
            ..base
        }),
        _ => None,
    }
}

/// Cursors 1 and 2 are `transaction.created`; 3 is a `not_me` denial that
/// reports fraud.
pub fn event(cursor: u64) -> Event {
    let occurred_at = at(1_700_000_000 + i64::try_from(cursor).unwrap());
    if cursor == 3 {
        return Event {
            cursor,
            r#type: "transaction.denied".to_owned(),
            occurred_at,
            transaction_id: TX_DENIED.to_owned(),
            user_id: "alice".to_owned(),
            device_id: "d-1".to_owned(),
            reason: "not_me".to_owned(),
            fraud_reported: true,
            ..Event::default()
        };
    }
    Event {
        cursor,
        r#type: "transaction.created".to_owned(),
        occurred_at,
        transaction_id: TX_PENDING.to_owned(),
        ..Event::default()
    }
}
