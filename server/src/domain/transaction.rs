//! Transaction states, the transitions between them, and event types (SPEC §3–§4).

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
    /// initial state. The store's conditional updates use exactly this table.
    /// A decision comes from `Scanned` for an OTP transaction (the device
    /// that scanned it decides) and from `Pending` for a push (the first of
    /// the user's devices to answer claims it); the store's device guard
    /// tells the two apart.
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
    fn only_pending_and_scanned_are_open() {
        let open: Vec<_> = ALL.into_iter().filter(|s| !s.is_terminal()).collect();
        assert_eq!(open, vec![Pending, Scanned]);
    }
}
