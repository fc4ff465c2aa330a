//! The exceptions the module raises, and the one table that turns an SDK
//! [`Error`] into one of them.

use assent_device::Error;
use pyo3::PyErr;
use pyo3::create_exception;
use pyo3::exceptions::PyException;

create_exception!(
    assent_device,
    AssentError,
    PyException,
    "Base class of every error the Assent device SDK raises."
);
create_exception!(
    assent_device,
    NotEnrolledError,
    AssentError,
    "The state directory holds no enrollment: call enroll() first."
);
create_exception!(
    assent_device,
    AlreadyEnrolledError,
    AssentError,
    "The state directory already holds an enrollment: pass force=True to replace it."
);
create_exception!(
    assent_device,
    InvalidArgumentError,
    AssentError,
    "A device name or server URL that cannot be used."
);
create_exception!(
    assent_device,
    EnrollmentRefusedError,
    AssentError,
    "The server refused the enrollment (unknown, used or expired code, invalid input)."
);
create_exception!(
    assent_device,
    ServerUnreachableError,
    AssentError,
    "The server could not be reached (network, TLS, or no answer in time)."
);
create_exception!(
    assent_device,
    RevokedError,
    AssentError,
    "The server revoked this device: enroll it again with a new code."
);

/// The Python exception for an SDK error; its message is the SDK's, which
/// says what to do.
pub(crate) fn to_py(error: Error) -> PyErr {
    let message = error.to_string();
    match error {
        // The SDK's words for these name the agent's command line; a Python
        // caller needs the Python spelling.
        Error::NotEnrolled { state_dir } => NotEnrolledError::new_err(format!(
            "not enrolled: no enrollment in {}; call assent_device.enroll() with a code first",
            state_dir.display()
        )),
        Error::AlreadyEnrolled { state_dir } => AlreadyEnrolledError::new_err(format!(
            "already enrolled in {}: pass force=True to replace the existing enrollment",
            state_dir.display()
        )),
        Error::InvalidDeviceName(_) | Error::InvalidServerUrl { .. } => {
            InvalidArgumentError::new_err(message)
        }
        Error::EnrollmentRefused { .. } => EnrollmentRefusedError::new_err(message),
        Error::ServerUnreachable { .. } => ServerUnreachableError::new_err(message),
        Error::Revoked { message } => RevokedError::new_err(format!(
            "this device was revoked by its application ({message}); enroll it again with a \
             new code (assent_device.enroll(..., force=True))"
        )),
        _ => AssentError::new_err(message),
    }
}
