//! What a handler answers to a confirmation request.

/// Why a login was refused; the wire value goes into the signed decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// The person says the login was not theirs: the relying party sees a
    /// fraud report, and further pushes to this user are held back.
    NotMe,
    /// The person gave up on the question.
    CancelledByUser,
    /// A rule refused it (deny policy, failed or timed-out command, no
    /// person to ask).
    Policy,
}

impl DenyReason {
    /// The reason text the server stores (`not_me`, `cancelled_by_user`,
    /// `policy`).
    ///
    /// ```
    /// assert_eq!(assent_device::DenyReason::NotMe.as_str(), "not_me");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotMe => "not_me",
            Self::CancelledByUser => "cancelled_by_user",
            Self::Policy => "policy",
        }
    }

    /// The reason named by its wire text (`cancelled` is taken for
    /// `cancelled_by_user`); `None` for anything else.
    ///
    /// ```
    /// use assent_device::DenyReason;
    /// assert_eq!(DenyReason::parse("not_me"), Some(DenyReason::NotMe));
    /// assert_eq!(DenyReason::parse("cancelled"), Some(DenyReason::CancelledByUser));
    /// assert_eq!(DenyReason::parse("maybe"), None);
    /// ```
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "not_me" => Some(Self::NotMe),
            "cancelled_by_user" | "cancelled" => Some(Self::CancelledByUser),
            "policy" => Some(Self::Policy),
            _ => None,
        }
    }
}

/// A handler's answer to one confirmation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Approve the login, with the number the person picked under number
    /// matching (`None` when the request offered no numbers).
    Accept {
        /// One of the request's number choices, or `None`.
        number: Option<u32>,
    },
    /// Refuse it, with a reason.
    Deny(DenyReason),
}

impl Answer {
    /// Approve a login that offers no number choices.
    pub const ACCEPT: Self = Self::Accept { number: None };

    /// Whether this answer can answer a request offering `choices`: an
    /// acceptance picks one of them exactly when some are offered. An
    /// answer that cannot is sent as a denial with reason `policy`.
    ///
    /// ```
    /// use assent_device::{Answer, DenyReason};
    /// assert!(Answer::ACCEPT.answers(&[]));
    /// assert!(!Answer::ACCEPT.answers(&[12, 45, 78]));
    /// assert!(Answer::Accept { number: Some(45) }.answers(&[12, 45, 78]));
    /// assert!(Answer::Deny(DenyReason::NotMe).answers(&[12, 45, 78]));
    /// ```
    pub fn answers(&self, choices: &[u32]) -> bool {
        match self {
            Self::Deny(_) => true,
            Self::Accept { number: None } => choices.is_empty(),
            Self::Accept {
                number: Some(number),
            } => choices.contains(number),
        }
    }
}
