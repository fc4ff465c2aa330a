//! `Device`: a running device with its own Tokio runtime. Every call that
//! waits on Rust (handing in an OTP, status, stop) releases the GIL; Python
//! is only called from the runtime's blocking threads (see `handler`).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use assent_device::{DeviceConfig, DeviceHandle, OtpOutcome};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::client_identity;
use pyo3::types::PyDict;
use tokio::task::JoinHandle;

use crate::errors::{AssentError, to_py};
use crate::handler::{PythonHandler, deliver};
use crate::outcome::PyOutcome;
use crate::request::PyRequest;
use crate::runtime::DeviceRuntime;

/// How long `stop()` waits for the device, then for the last notices.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a waiting `submit_otp` looks for Ctrl-C (Python signals).
const SIGNAL_CHECK: Duration = Duration::from_millis(200);
/// What a stopped device answers.
const STOPPED: &str = "the device has stopped";

/// A running device: holds the signed stream to the server (reconnecting
/// with back-off) and asks `handler.confirm(request)` about every login
/// confirmation. Stop it with `stop()` or use it as a context manager.
#[pyclass(frozen, module = "assent_device", name = "Device")]
pub(crate) struct PyDevice {
    running: Mutex<Option<Running>>,
}

/// What a started device owns.
struct Running {
    runtime: Arc<DeviceRuntime>,
    device: assent_device::Device,
    handle: DeviceHandle,
    /// The blocking task that tells the handler's notifications to Python.
    notices: JoinHandle<()>,
}

/// `seconds` as a duration; ValueError for negative, NaN or huge values.
pub(crate) fn seconds(seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds).map_err(|_| {
        PyValueError::new_err(format!(
            "timeout must be a non-negative number of seconds, got {seconds}"
        ))
    })
}

impl PyDevice {
    fn running(&self) -> MutexGuard<'_, Option<Running>> {
        // A panic cannot happen while the lock is held; recover anyway.
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The runtime and handle of the running device, or None once stopped.
    fn parts(&self) -> Option<(Arc<DeviceRuntime>, DeviceHandle)> {
        self.running()
            .as_ref()
            .map(|running| (Arc::clone(&running.runtime), running.handle.clone()))
    }
}

#[pymethods]
impl PyDevice {
    /// Starts the device enrolled in `state_dir` (see `enroll`), talking to
    /// `server` (a URL, or several separated by commas); `ca_cert` is the PEM
    /// file of the CA that signed an https:// server's certificate;
    /// `client_cert` and `client_key` the PEM files presented to a server
    /// that asks for a client certificate (mutual TLS). Raises
    /// NotEnrolledError without an enrollment, InvalidArgumentError for a
    /// bad URL, TypeError when `handler` has no `confirm` method. Returns at
    /// once; the device connects in the background (see `on_connection`).
    #[new]
    #[pyo3(signature = (state_dir, server, handler, ca_cert=None, client_cert=None, client_key=None))]
    fn new(
        py: Python<'_>,
        state_dir: PathBuf,
        server: String,
        handler: Py<PyAny>,
        ca_cert: Option<PathBuf>,
        client_cert: Option<PathBuf>,
        client_key: Option<PathBuf>,
    ) -> PyResult<Self> {
        let is_callable = handler
            .bind(py)
            .getattr("confirm")
            .is_ok_and(|confirm| confirm.is_callable());
        if !is_callable {
            return Err(PyTypeError::new_err(
                "handler must have a confirm(request) method returning \
                 assent_device.accept(...) or assent_device.deny(...)",
            ));
        }
        let runtime = DeviceRuntime::new().map(Arc::new).map_err(|error| {
            AssentError::new_err(format!("cannot start the device's runtime: {error}"))
        })?;
        let Some(spawner) = runtime.handle() else {
            return Err(AssentError::new_err("the device's runtime is gone"));
        };
        let handler = Arc::new(handler);
        let (notice_tx, notice_rx) = mpsc::channel();
        let python = Arc::clone(&handler);
        let notices = spawner.spawn_blocking(move || {
            while let Ok(notice) = notice_rx.recv() {
                Python::attach(|py| deliver(py, &python, notice));
            }
        });
        let bridge = PythonHandler::new(handler, Arc::downgrade(&runtime), notice_tx);
        let config = DeviceConfig {
            ca_cert,
            client_identity: client_identity(client_cert, client_key)?,
            ..DeviceConfig::new(state_dir, server)
        };
        let device = {
            let _entered = spawner.enter();
            assent_device::Device::start(config, bridge).map_err(to_py)?
        };
        let handle = device.handle();
        Ok(Self {
            running: Mutex::new(Some(Running {
                runtime,
                device,
                handle,
                notices,
            })),
        })
    }

    /// Hands in the OTP the login page shows (scanned or typed; base64 or
    /// base64url) and waits, without holding the GIL, for its outcome: the
    /// handler's `confirm` is asked and the signed decision sent. Never
    /// raises for what happens to the login: `Outcome.ok` is True only when
    /// it was accepted, `Outcome.error` says why there is no final state.
    /// `timeout` (seconds) bounds the wait; Ctrl-C interrupts it.
    #[pyo3(signature = (otp, timeout=None))]
    fn submit_otp(&self, py: Python<'_>, otp: String, timeout: Option<f64>) -> PyResult<PyOutcome> {
        let deadline = timeout
            .map(seconds)
            .transpose()?
            .map(|limit| (limit, Instant::now() + limit));
        let Some((runtime, handle)) = self.parts() else {
            return Ok(OtpOutcome::failed(None, STOPPED).into());
        };
        let mut submitted: Pin<Box<dyn Future<Output = OtpOutcome> + Send>> =
            Box::pin(async move { handle.submit_otp(&otp).await });
        loop {
            let slice = deadline.map_or(SIGNAL_CHECK, |(_, at)| {
                SIGNAL_CHECK.min(at.saturating_duration_since(Instant::now()))
            });
            let waited = py.detach(|| {
                runtime.block_on(async { tokio::time::timeout(slice, &mut submitted).await })
            });
            match waited {
                None => return Ok(OtpOutcome::failed(None, STOPPED).into()),
                Some(Ok(outcome)) => return Ok(outcome.into()),
                Some(Err(_)) => {}
            }
            py.check_signals()?;
            if let Some((limit, at)) = deadline
                && Instant::now() >= at
            {
                // Dropping the submission withdraws this caller's interest.
                return Ok(OtpOutcome::failed(
                    None,
                    format!("timeout: no outcome within {} s", limit.as_secs_f64()),
                )
                .into());
            }
        }
    }

    /// The device's state as a dict: `connected` (bool: an authenticated
    /// stream is up), `device_id`, `user_id`, `application_id`,
    /// `application_name`, `server`; None once the device has stopped.
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some((runtime, handle)) = self.parts() else {
            return Ok(None);
        };
        let Some(status) = py.detach(|| runtime.block_on(handle.status())).flatten() else {
            return Ok(None);
        };
        let dict = PyDict::new(py);
        dict.set_item("connected", status.connected)?;
        dict.set_item("device_id", &status.profile.device_id)?;
        dict.set_item("user_id", &status.profile.user_id)?;
        dict.set_item("application_id", &status.profile.application_id)?;
        dict.set_item("application_name", &status.profile.application_name)?;
        dict.set_item("server", &status.profile.server)?;
        Ok(Some(dict))
    }

    /// The confirmation requests the handler is deciding now (empty once
    /// stopped).
    fn pending(&self, py: Python<'_>) -> PyResult<Vec<Py<PyRequest>>> {
        let Some((runtime, handle)) = self.parts() else {
            return Ok(Vec::new());
        };
        let requests = py
            .detach(|| runtime.block_on(handle.pending()))
            .unwrap_or_default();
        requests
            .into_iter()
            .map(|request| Py::new(py, PyRequest::new(request, None)))
            .collect()
    }

    /// Stops the device: waiting `submit_otp` calls return an error
    /// outcome, decisions in progress are abandoned, the stream closes and
    /// the last notifications are delivered. Idempotent. Raises RevokedError
    /// when the server had revoked the device.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let Some(running) = self.running().take() else {
            return Ok(());
        };
        let Running {
            runtime,
            device,
            notices,
            ..
        } = running;
        let stopped = py.detach(|| {
            runtime.block_on(async move {
                let stopped = tokio::time::timeout(STOP_TIMEOUT, device.stop()).await;
                // The notice task ends once the SDK has dropped the handler.
                let _ = tokio::time::timeout(STOP_TIMEOUT, notices).await;
                stopped
            })
        });
        match stopped {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(error))) => Err(to_py(error)),
            Some(Err(_)) => Err(AssentError::new_err(format!(
                "the device did not stop within {} s",
                STOP_TIMEOUT.as_secs()
            ))),
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.stop(py)?;
        Ok(false)
    }
}
