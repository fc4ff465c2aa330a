//! The one error type of the use cases; `grpc::status` maps it to the wire,
//! with a stable reason code (docs/relying-party.md lists them all), facts
//! a program can act on, and a retry hint where waiting helps.

use std::time::Duration;

use super::reason;
use crate::domain::InputError;
use crate::store::StoreError;

/// A refusal a program can act on: a human message, a stable reason code,
/// facts (such as the open push's id) and how long to wait, if waiting helps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// For people.
    pub message: String,
    /// For programs: stable, `UPPER_SNAKE_CASE`.
    pub reason: &'static str,
    /// Facts, as key and value.
    pub metadata: Vec<(&'static str, String)>,
    /// When trying again can succeed.
    pub retry_after: Option<Duration>,
}

impl Refused {
    /// A refusal with a reason code and a message.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Box<Self> {
        Box::new(Self {
            message: message.into(),
            reason,
            metadata: Vec::new(),
            retry_after: None,
        })
    }
}

/// Adds facts and retry hints to a boxed [`Refused`].
pub trait RefusedExt {
    /// Adds a fact.
    fn with(self, key: &'static str, value: impl ToString) -> Self;
    /// Says when trying again can succeed.
    fn retry_after(self, wait: Duration) -> Self;
}

impl RefusedExt for Box<Refused> {
    fn with(mut self, key: &'static str, value: impl ToString) -> Self {
        self.metadata.push((key, value.to_string()));
        self
    }

    fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What went wrong, named by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed; fix the named field.
    #[error(transparent)]
    Input(#[from] InputError),
    /// No valid credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials that may not do this.
    #[error("{0}")]
    PermissionDenied(Box<Refused>),
    /// Nothing of that kind exists for this caller.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The OTP is unknown, used, expired or foreign: deliberately one answer.
    #[error("the OTP is not valid: unknown, expired, already used or not meant for this device")]
    OtpRefused,
    /// The enrollment code is unknown, used or expired: deliberately one answer.
    #[error(
        "the enrollment code is not valid: unknown, expired or already used; ask for a new one"
    )]
    EnrollmentRefused,
    /// The target is in the wrong state for this.
    #[error("{0}")]
    FailedPrecondition(Box<Refused>),
    /// A rate or size limit was hit; the message says when to retry.
    #[error("{0}")]
    ResourceExhausted(Box<Refused>),
    /// A cursor outside the retained range.
    #[error("{0}")]
    OutOfRange(String),
    /// Superseded by something newer (a newer stream of the same device).
    #[error("{0}")]
    Aborted(String),
    /// Transient: try again (reconnect, resend); the message says what.
    #[error("{0}")]
    TryAgain(String),
    /// The transaction kept changing while this request was decided; retry.
    #[error("the transaction is changing concurrently; retry")]
    Contention,
    /// Storage cannot be reached; retry later.
    #[error("the server's database is unavailable; retry shortly")]
    Unavailable(#[source] StoreError),
    /// A bug or corrupt data; details are logged, not sent.
    #[error("internal error")]
    Internal(#[source] StoreError),
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => Self::Unavailable(error),
            StoreError::DuplicatePublicKey => Self::FailedPrecondition(Refused::new(
                reason::PUBLIC_KEY_IN_USE,
                "this public key is already enrolled as another device of this application; \
                 generate a new key",
            )),
            // The commit-time guard of the domain's one-open-push rule
            // (PushRefusal::OpenPush): a push created at the same moment.
            StoreError::OpenPushExists => Self::ResourceExhausted(Refused::new(
                reason::PUSH_ALREADY_OPEN,
                "another push to this user was created at the same moment; wait for its \
                 outcome or cancel it",
            )),
            other => Self::Internal(other),
        }
    }
}

impl ServiceError {
    /// The stable reason code, facts and retry hint of this error.
    pub fn detail(&self) -> Refused {
        let plain = |reason: &'static str| Refused {
            message: self.to_string(),
            reason,
            metadata: Vec::new(),
            retry_after: None,
        };
        match self {
            Self::Input(error) => Refused {
                metadata: vec![("field", error.field.to_owned())],
                ..plain(reason::INVALID_ARGUMENT)
            },
            Self::PermissionDenied(refused)
            | Self::FailedPrecondition(refused)
            | Self::ResourceExhausted(refused) => (**refused).clone(),
            Self::Unauthenticated(_) => plain(reason::UNAUTHENTICATED),
            Self::NotFound(what) => Refused {
                metadata: vec![("resource", (*what).to_owned())],
                ..plain(reason::NOT_FOUND)
            },
            Self::OtpRefused => plain(reason::OTP_REFUSED),
            Self::EnrollmentRefused => plain(reason::ENROLLMENT_CODE_REFUSED),
            Self::OutOfRange(_) => plain(reason::CURSOR_OUT_OF_RANGE),
            Self::Aborted(_) => plain(reason::STREAM_REPLACED),
            Self::TryAgain(_) => Refused {
                retry_after: Some(Duration::from_secs(1)),
                ..plain(reason::TRY_AGAIN)
            },
            Self::Contention => Refused {
                retry_after: Some(Duration::from_millis(50)),
                ..plain(reason::CONTENTION)
            },
            Self::Unavailable(_) => Refused {
                retry_after: Some(Duration::from_secs(1)),
                ..plain(reason::DATABASE_UNAVAILABLE)
            },
            Self::Internal(_) => plain(reason::INTERNAL),
        }
    }
}

impl ServiceError {
    /// The refusal of a revoked device — on its stream, its hello, its
    /// decisions — defined once (`DEVICE_REVOKED`).
    pub fn device_revoked() -> Self {
        Self::PermissionDenied(Refused::new(
            reason::DEVICE_REVOKED,
            "this device has been revoked by its application; enroll it again with a new code",
        ))
    }
}
