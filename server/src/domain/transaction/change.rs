//! What a decided transition is: the record it writes, the guards that must
//! still hold when it commits, the event it appends and whom it notifies.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::aggregate::Transaction;
use super::state::{EventType, Reason, WithdrawReason};
use crate::domain::rate::StrikeWindow;
use crate::domain::{ApplicationId, DeviceId, TransactionId, UserId};

/// One decided change of one transaction, applied atomically by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The stored version this change was decided on; `None` inserts a new
    /// transaction. The store writes only if the stored version still
    /// equals it (compare-and-set), so two changes decided on the same
    /// version can never both apply.
    pub expected: Option<i64>,
    /// The transaction as this change leaves it (its version included).
    pub after: Transaction,
    /// Conditions on other rows that must hold at commit time.
    pub guard: Guard,
    /// The event appended in the same atomic write.
    pub event: NewEvent,
    /// What devices are told once the change is applied.
    pub notices: Vec<Notice>,
}

/// Conditions the store checks in the same atomic write as the change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Guard {
    /// This device must exist in the transaction's application and be
    /// unrevoked when the change commits.
    pub device_unrevoked: Option<DeviceId>,
    /// The transaction must not have expired at this time.
    pub unexpired_at: Option<DateTime<Utc>>,
    /// The device (`device_unrevoked`) must not be cooling off from wrong
    /// OTPs under this window: set on a scan decided without a reservation
    /// (see [`Transaction::scan_unreserved`]), so that one still waits out
    /// the window like every other lookup.
    ///
    /// [`Transaction::scan_unreserved`]: super::aggregate::Transaction::scan_unreserved
    pub otp_lookups: Option<StrikeWindow>,
}

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Whose log it goes to.
    pub application_id: ApplicationId,
    /// What happened.
    pub event_type: EventType,
    /// The transaction, if any.
    pub transaction_id: Option<TransactionId>,
    /// The user, if known.
    pub user_id: Option<UserId>,
    /// The device, if any.
    pub device_id: Option<DeviceId>,
    /// Why it was denied or failed.
    pub reason: Option<Reason>,
    /// A `not_me` denial: the user reports fraud.
    pub fraud_reported: bool,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// Which device sessions a notice is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum Audience {
    /// One device.
    Device {
        /// The device.
        device_id: DeviceId,
    },
    /// Every device of one user, except possibly one.
    User {
        /// The application.
        application_id: ApplicationId,
        /// The user.
        user_id: UserId,
        /// A device not to tell (the one that answered).
        except: Option<DeviceId>,
    },
}

/// Something device sessions or subscribers must learn; the one
/// notification type, in process and between replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// The application's event log grew: subscribers read on.
    EventsAppended {
        /// The application.
        application_id: ApplicationId,
    },
    /// A push: ask every device of the user to confirm it.
    Confirm {
        /// The application.
        application_id: ApplicationId,
        /// The user.
        user_id: UserId,
        /// The push.
        transaction_id: TransactionId,
    },
    /// A confirmation no longer needs an answer.
    Withdraw {
        /// Who holds it.
        audience: Audience,
        /// The transaction.
        transaction_id: TransactionId,
        /// Why.
        reason: WithdrawReason,
    },
    /// The device was revoked: end its streams.
    Revoked {
        /// The device.
        device_id: DeviceId,
    },
    /// A transaction reached its terminal state: whoever waits for its
    /// outcome reads it.
    Settled {
        /// The application.
        application_id: ApplicationId,
        /// The transaction.
        transaction_id: TransactionId,
    },
    /// A device authenticated a new stream: its older streams, wherever
    /// they are, are replaced (one live stream per device).
    StreamOpened {
        /// The device.
        device_id: DeviceId,
        /// The new stream, which stays.
        stream: uuid::Uuid,
        /// When it opened: only streams opened before it are replaced, so a
        /// notice that arrives late cannot end a newer stream.
        opened_at: DateTime<Utc>,
    },
}
