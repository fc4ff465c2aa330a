//! The one table from [`ServiceError`] to a gRPC status. Unexpected errors
//! are logged here once, with their cause chain, and leave as a bare `internal`.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::InputError;
use crate::service::{Refused, ServiceError};

/// The gRPC code for a service error.
pub fn code_of(error: &ServiceError) -> Code {
    match error {
        ServiceError::Input(_) => Code::InvalidArgument,
        ServiceError::Unauthenticated(_) => Code::Unauthenticated,
        ServiceError::PermissionDenied(_) => Code::PermissionDenied,
        ServiceError::NotFound(_) | ServiceError::OtpRefused | ServiceError::EnrollmentRefused => {
            Code::NotFound
        }
        ServiceError::FailedPrecondition(_) => Code::FailedPrecondition,
        ServiceError::Aborted(_) => Code::Aborted,
        ServiceError::ResourceExhausted(_) => Code::ResourceExhausted,
        ServiceError::OutOfRange(_) => Code::OutOfRange,
        ServiceError::Unavailable(_) | ServiceError::Contention | ServiceError::TryAgain(_) => {
            Code::Unavailable
        }
        ServiceError::Internal(_) => Code::Internal,
    }
}

/// The `domain` of every `google.rpc.ErrorInfo` the server sends.
pub const ERROR_DOMAIN: &str = "assent.v1";

/// Converts a service error into what the client sees: the message, and
/// as details a `google.rpc.ErrorInfo` (stable reason, facts) and, where
/// waiting helps, a `google.rpc.RetryInfo`.
pub fn to_status(error: &ServiceError) -> Status {
    let code = code_of(error);
    if matches!(code, Code::Internal | Code::Unavailable) {
        tracing::error!(error = %assent_proto::report::error_chain(error), "request failed");
    }
    refusal(code, &error.detail())
}

/// A status with the details of `refused`.
pub fn refusal(code: Code, refused: &Refused) -> Status {
    let metadata: HashMap<String, String> = refused
        .metadata
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.clone()))
        .collect();
    let mut details = ErrorDetails::with_error_info(refused.reason, ERROR_DOMAIN, metadata);
    if let Some(wait) = refused.retry_after {
        details.set_retry_info(Some(wait));
    }
    Status::with_error_details(code, refused.message.clone(), details)
}

/// A status built outside the use cases (transport limits), with details.
pub fn plain(code: Code, reason: &'static str, message: impl Into<String>) -> Status {
    refusal(code, &Refused::new(reason, message))
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        to_status(&error)
    }
}

impl From<InputError> for Status {
    fn from(error: InputError) -> Self {
        to_status(&ServiceError::Input(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otp_refusals_are_indistinguishable_not_found() {
        let status = to_status(&ServiceError::OtpRefused);
        assert_eq!(status.code(), Code::NotFound);
        assert!(!status.message().contains("expired only"));
    }

    #[test]
    fn input_errors_name_the_field() {
        let status = to_status(&InputError::new("message", "must not be empty").into());
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "message: must not be empty");
    }
}
