//! `assent_device` for Python: a thin host over the `assent-device` SDK.
//!
//! `enroll()` enrolls a device; `Device(state_dir, server, handler)` runs it,
//! asking the Python `handler.confirm(request)` about every login
//! confirmation (it returns `accept(...)` or `deny(reason)`);
//! `Device.submit_otp()` hands in a scanned OTP and returns its `Outcome`.
//!
//! Where things live: `device` (the running device and its runtime),
//! `handler` (the SDK handler that calls Python), `request`, `answer`,
//! `outcome` (the values handed across), `errors` (the exceptions and the
//! one table mapping SDK errors to them), `runtime` (the Tokio runtime a
//! device owns). The Python API reference is
//! `assent_device.pyi`, shipped in the wheel.

mod answer;
mod device;
mod errors;
mod handler;
mod outcome;
mod request;
mod runtime;

use std::path::PathBuf;

use assent_device::DeviceConfig;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{
    AlreadyEnrolledError, AssentError, EnrollmentRefusedError, InvalidArgumentError,
    NotEnrolledError, RevokedError, ServerUnreachableError, to_py,
};

/// The client certificate and key, both or neither.
pub(crate) fn client_identity(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> PyResult<Option<assent_device::ClientIdentity>> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(assent_device::ClientIdentity { cert, key })),
        (None, None) => Ok(None),
        _ => Err(InvalidArgumentError::new_err(
            "give both client_cert and client_key, or neither",
        )),
    }
}

/// Enrolls this device with the one-time `code` the application showed the
/// user, under `device_name` (1 to 64 characters), and saves its new key and
/// profile in `state_dir` (created with mode 0700; files 0600). Refuses to
/// replace an existing enrollment unless `force`. Returns a dict with
/// `device_id`, `user_id`, `application_id` and `application_name`. Waits
/// for the server without holding the GIL.
#[pyfunction]
#[pyo3(signature = (state_dir, server, code, device_name, force=false, ca_cert=None, client_cert=None, client_key=None))]
#[allow(clippy::too_many_arguments)]
fn enroll<'py>(
    py: Python<'py>,
    state_dir: PathBuf,
    server: String,
    code: String,
    device_name: String,
    force: bool,
    ca_cert: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
) -> PyResult<Bound<'py, PyDict>> {
    let config = DeviceConfig {
        ca_cert,
        client_identity: client_identity(client_cert, client_key)?,
        ..DeviceConfig::new(state_dir, server)
    };
    let enrollment = py
        .detach(|| -> Result<_, String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| format!("cannot start a runtime: {error}"))?;
            Ok(runtime.block_on(assent_device::enroll(&config, &code, &device_name, force)))
        })
        .map_err(AssentError::new_err)?
        .map_err(to_py)?;
    let dict = PyDict::new(py);
    dict.set_item("device_id", enrollment.device_id)?;
    dict.set_item("user_id", enrollment.user_id)?;
    dict.set_item("application_id", enrollment.application_id)?;
    dict.set_item("application_name", enrollment.application_name)?;
    Ok(dict)
}

/// The Assent device SDK: enroll a device and answer login confirmations
/// (OTP and push) through a handler object.
#[pymodule(name = "assent_device")]
fn python_module(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_function(wrap_pyfunction!(enroll, module)?)?;
    module.add_function(wrap_pyfunction!(answer::accept, module)?)?;
    module.add_function(wrap_pyfunction!(answer::deny, module)?)?;
    module.add_class::<device::PyDevice>()?;
    module.add_class::<request::PyRequest>()?;
    module.add_class::<answer::PyAnswer>()?;
    module.add_class::<outcome::PyOutcome>()?;
    module.add("AssentError", py.get_type::<AssentError>())?;
    module.add("NotEnrolledError", py.get_type::<NotEnrolledError>())?;
    module.add(
        "AlreadyEnrolledError",
        py.get_type::<AlreadyEnrolledError>(),
    )?;
    module.add(
        "InvalidArgumentError",
        py.get_type::<InvalidArgumentError>(),
    )?;
    module.add(
        "EnrollmentRefusedError",
        py.get_type::<EnrollmentRefusedError>(),
    )?;
    module.add(
        "ServerUnreachableError",
        py.get_type::<ServerUnreachableError>(),
    )?;
    module.add("RevokedError", py.get_type::<RevokedError>())?;
    Ok(())
}
