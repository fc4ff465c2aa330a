//! The one error type of the use cases; `grpc::status` maps it to the wire.

use crate::domain::InputError;
use crate::store::StoreError;

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
    PermissionDenied(String),
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
    FailedPrecondition(String),
    /// A rate or size limit was hit; the message says when to retry.
    #[error("{0}")]
    ResourceExhausted(String),
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
            StoreError::DuplicatePublicKey => Self::FailedPrecondition(
                "this public key is already enrolled as another device of this application; \
                 generate a new key"
                    .to_owned(),
            ),
            other => Self::Internal(other),
        }
    }
}
