//! Transaction states, kinds, outcome reasons and event types (SPEC §3–§4).

use crate::domain::DenyReason;

/// The lifecycle state of a transaction. Terminal states never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionState {
    /// Created; no device has claimed it.
    Pending,
    /// Bound to the device that handed in the OTP.
    Scanned,
    /// The device signed an accept.
    Accepted,
    /// The device signed a deny.
    Denied,
    /// The TTL ran out first.
    Expired,
    /// The application cancelled it.
    Cancelled,
    /// It could not complete (the reason says why).
    Failed,
}

impl TransactionState {
    /// States from which a transaction can still move.
    pub const OPEN: &'static [Self] = &[Self::Pending, Self::Scanned];
    /// Every state.
    pub const ALL: [Self; 7] = [
        Self::Pending,
        Self::Scanned,
        Self::Accepted,
        Self::Denied,
        Self::Expired,
        Self::Cancelled,
        Self::Failed,
    ];

    /// The storage and SPEC name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Scanned => "SCANNED",
            Self::Accepted => "ACCEPTED",
            Self::Denied => "DENIED",
            Self::Expired => "EXPIRED",
            Self::Cancelled => "CANCELLED",
            Self::Failed => "FAILED",
        }
    }

    /// Parses the storage name.
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Scanned,
            Self::Accepted,
            Self::Denied,
            Self::Expired,
            Self::Cancelled,
            Self::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }

    /// Whether the state can never change again.
    pub fn is_terminal(self) -> bool {
        !Self::OPEN.contains(&self)
    }

    /// The states this one may be entered from; empty for `Pending`, the
    /// initial state. The transaction aggregate checks every change against
    /// this table. A decision comes from `Scanned` for an OTP transaction
    /// (the device that scanned it decides) and from `Pending` for a push
    /// (the first of the user's devices to answer claims it).
    pub fn entered_from(self) -> &'static [Self] {
        match self {
            Self::Pending => &[],
            Self::Scanned => &[Self::Pending],
            Self::Accepted | Self::Denied => Self::OPEN,
            Self::Expired | Self::Cancelled | Self::Failed => Self::OPEN,
        }
    }

    /// The event recorded when a transaction enters this state.
    pub fn event(self) -> EventType {
        match self {
            Self::Pending => EventType::TransactionCreated,
            Self::Scanned => EventType::TransactionScanned,
            Self::Accepted => EventType::TransactionAccepted,
            Self::Denied => EventType::TransactionDenied,
            Self::Expired => EventType::TransactionExpired,
            Self::Cancelled => EventType::TransactionCancelled,
            Self::Failed => EventType::TransactionFailed,
        }
    }
}

/// How a transaction reaches its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionKind {
    /// The device hands in an OTP shown on the login page.
    Otp,
    /// The request is pushed to every device of the user.
    Push,
}

impl TransactionKind {
    /// The storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Otp => "OTP",
            Self::Push => "PUSH",
        }
    }

    /// Parses the storage name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "OTP" => Some(Self::Otp),
            "PUSH" => Some(Self::Push),
            _ => None,
        }
    }

    /// The state a transaction of this kind is decided from.
    pub fn decided_from(self) -> TransactionState {
        match self {
            Self::Otp => TransactionState::Scanned,
            Self::Push => TransactionState::Pending,
        }
    }
}

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// A transaction was created.
    TransactionCreated,
    /// A device handed in the OTP.
    TransactionScanned,
    /// The device accepted.
    TransactionAccepted,
    /// The device denied.
    TransactionDenied,
    /// The TTL ran out.
    TransactionExpired,
    /// The application cancelled.
    TransactionCancelled,
    /// The transaction failed.
    TransactionFailed,
    /// A device enrolled.
    DeviceEnrolled,
    /// A device was revoked.
    DeviceRevoked,
}

impl EventType {
    /// Every event type.
    pub const ALL: [Self; 9] = [
        Self::TransactionCreated,
        Self::TransactionScanned,
        Self::TransactionAccepted,
        Self::TransactionDenied,
        Self::TransactionExpired,
        Self::TransactionCancelled,
        Self::TransactionFailed,
        Self::DeviceEnrolled,
        Self::DeviceRevoked,
    ];

    /// Parses the storage name.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|event| event.as_str() == text)
    }

    /// The state a transaction event leaves its transaction in (the one
    /// vocabulary: [`TransactionState::event`] read backwards); `None` for
    /// device events.
    pub fn state(self) -> Option<TransactionState> {
        TransactionState::ALL
            .into_iter()
            .find(|state| state.event() == self)
    }

    /// Whether this event records how a transaction ended.
    pub fn is_outcome(self) -> bool {
        matches!(
            self,
            Self::TransactionAccepted
                | Self::TransactionDenied
                | Self::TransactionExpired
                | Self::TransactionCancelled
                | Self::TransactionFailed
        )
    }

    /// The name on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TransactionCreated => "transaction.created",
            Self::TransactionScanned => "transaction.scanned",
            Self::TransactionAccepted => "transaction.accepted",
            Self::TransactionDenied => "transaction.denied",
            Self::TransactionExpired => "transaction.expired",
            Self::TransactionCancelled => "transaction.cancelled",
            Self::TransactionFailed => "transaction.failed",
            Self::DeviceEnrolled => "device.enrolled",
            Self::DeviceRevoked => "device.revoked",
        }
    }
}

/// Why a transaction ended as it did: the device's own denial reason, or
/// one the server records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The device's user did not try to log in (a fraud report).
    NotMe,
    /// The device's user changed their mind.
    CancelledByUser,
    /// The device's policy refused.
    Policy,
    /// The device accepted with a number other than the one shown.
    WrongNumber,
    /// The device holding the transaction was revoked.
    DeviceRevoked,
}

impl Reason {
    /// The storage and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotMe => "not_me",
            Self::CancelledByUser => "cancelled_by_user",
            Self::Policy => "policy",
            Self::WrongNumber => "wrong_number",
            Self::DeviceRevoked => "device_revoked",
        }
    }

    /// Parses the storage name.
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::NotMe,
            Self::CancelledByUser,
            Self::Policy,
            Self::WrongNumber,
            Self::DeviceRevoked,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == text)
    }
}

impl From<DenyReason> for Reason {
    fn from(reason: DenyReason) -> Self {
        match reason {
            DenyReason::NotMe => Self::NotMe,
            DenyReason::CancelledByUser => Self::CancelledByUser,
            DenyReason::Policy => Self::Policy,
        }
    }
}

/// Why a device is told to drop a confirmation it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawReason {
    /// Another device of the user answered the push first.
    AnsweredElsewhere,
    /// The application cancelled the transaction.
    Cancelled,
    /// The transaction expired.
    Expired,
    /// The device was revoked.
    DeviceRevoked,
}

impl WithdrawReason {
    /// The wire name (`Cancellation.reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AnsweredElsewhere => "answered_elsewhere",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::DeviceRevoked => "device_revoked",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TransactionState::*;

    const ALL: [TransactionState; 7] = [
        Pending, Scanned, Accepted, Denied, Expired, Cancelled, Failed,
    ];

    #[test]
    fn storage_names_round_trip() {
        for state in ALL {
            assert_eq!(TransactionState::parse(state.as_str()), Some(state));
        }
        assert_eq!(TransactionState::parse("accepted"), None);
    }

    #[test]
    fn no_state_is_entered_from_a_terminal_state() {
        for state in ALL {
            assert!(state.entered_from().iter().all(|from| !from.is_terminal()));
        }
    }

    #[test]
    fn otp_decisions_follow_a_scan_and_push_decisions_a_pending_push() {
        assert_eq!(TransactionKind::Otp.decided_from(), Scanned);
        assert_eq!(TransactionKind::Push.decided_from(), Pending);
        for kind in [TransactionKind::Otp, TransactionKind::Push] {
            assert!(Accepted.entered_from().contains(&kind.decided_from()));
            assert_eq!(TransactionKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn event_types_round_trip() {
        for event in EventType::ALL {
            assert_eq!(EventType::parse(event.as_str()), Some(event));
        }
    }

    #[test]
    fn reasons_round_trip() {
        for reason in [
            Reason::NotMe,
            Reason::CancelledByUser,
            Reason::Policy,
            Reason::WrongNumber,
            Reason::DeviceRevoked,
        ] {
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(Reason::parse("because"), None);
    }

    #[test]
    fn only_pending_and_scanned_are_open() {
        let open: Vec<_> = ALL.into_iter().filter(|s| !s.is_terminal()).collect();
        assert_eq!(open, vec![Pending, Scanned]);
    }
}
