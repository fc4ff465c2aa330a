//! The one table from [`ServiceError`] to a gRPC status. Unexpected errors
//! are logged here once, with their cause chain, and leave as a bare `internal`.

use tonic::{Code, Status};

use crate::domain::InputError;
use crate::service::ServiceError;

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

/// Converts a service error into what the client sees.
pub fn to_status(error: &ServiceError) -> Status {
    let code = code_of(error);
    if matches!(code, Code::Internal | Code::Unavailable) {
        tracing::error!(error = %chain(error), "request failed");
    }
    Status::new(code, error.to_string())
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        to_status(&error)
    }
}

impl From<InputError> for Status {
    fn from(error: InputError) -> Self {
        Status::invalid_argument(error.to_string())
    }
}

/// `error: cause: cause…` for logs.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
