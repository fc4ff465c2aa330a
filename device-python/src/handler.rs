//! The bridge from the SDK's [`Handler`] to the Python handler object:
//! `confirm` runs on a blocking thread of the device's runtime with the GIL
//! held; the notifications (`on_withdrawn`, `on_decided`, `on_connection`)
//! go, in order, through a queue to one blocking thread that calls Python,
//! so the SDK's event loop never waits for the GIL.

use std::sync::mpsc;
use std::sync::{Arc, Weak};

use assent_device::{Answer, ConnectionState, DenyReason, Handler, Request, Withdrawn};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::answer::PyAnswer;
use crate::request::PyRequest;
use crate::runtime::DeviceRuntime;

/// What the SDK reported, waiting to be told to Python.
#[derive(Debug)]
pub(crate) enum Notice {
    /// `on_withdrawn(transaction_id, reason)`.
    Withdrawn {
        transaction_id: String,
        reason: String,
    },
    /// `on_decided(transaction_id, state, applied)`.
    Decided {
        transaction_id: String,
        state: String,
        applied: bool,
    },
    /// `on_connection(state, detail)`.
    Connection { state: &'static str, detail: String },
}

/// The Python handler object as the SDK's [`Handler`].
pub(crate) struct PythonHandler {
    handler: Arc<Py<PyAny>>,
    /// For the requests' `wait_withdrawn` (weak: a request kept by Python
    /// must not keep a stopped device's threads alive).
    runtime: Weak<DeviceRuntime>,
    /// Unbounded, so the event loop never blocks on a slow Python callback:
    /// every notice answers one message of this device's own stream
    /// (its transactions and connection changes), and none may be dropped —
    /// a withdrawal is what closes a dialog.
    notices: mpsc::Sender<Notice>,
}

impl PythonHandler {
    /// Wraps `handler`; notices go to `notices`; requests wait for their
    /// withdrawal on `runtime`.
    pub(crate) fn new(
        handler: Arc<Py<PyAny>>,
        runtime: Weak<DeviceRuntime>,
        notices: mpsc::Sender<Notice>,
    ) -> Self {
        Self {
            handler,
            runtime,
            notices,
        }
    }

    fn notify(&self, notice: Notice) {
        // The receiver ends only after every sender: the device stopped.
        let _ = self.notices.send(notice);
    }
}

impl Handler for PythonHandler {
    async fn confirm(&self, request: Request, withdrawn: Withdrawn) -> Answer {
        let handler = Arc::clone(&self.handler);
        let transaction_id = request.transaction_id.clone();
        let id = transaction_id.clone();
        let request = PyRequest::new(request, Some((withdrawn, self.runtime.clone())));
        // On the device's runtime: its event loop runs this future.
        let asked = tokio::task::spawn_blocking(move || {
            Python::attach(|py| ask(py, &handler, request, &id))
        })
        .await;
        asked.unwrap_or_else(|error| {
            // Python errors are caught in `ask`; this is a panic in the glue.
            eprintln!(
                "assent_device: the confirm call for {transaction_id} failed ({error}); denying"
            );
            Answer::Deny(DenyReason::Policy)
        })
    }

    fn on_withdrawn(&self, transaction_id: &str, reason: &str) {
        self.notify(Notice::Withdrawn {
            transaction_id: transaction_id.to_owned(),
            reason: reason.to_owned(),
        });
    }

    fn on_decided(&self, transaction_id: &str, state: &str, applied: bool) {
        self.notify(Notice::Decided {
            transaction_id: transaction_id.to_owned(),
            state: state.to_owned(),
            applied,
        });
    }

    fn on_connection(&self, state: &ConnectionState) {
        let (state, detail) = match state {
            ConnectionState::Connected { server } => ("connected", server.clone()),
            ConnectionState::Disconnected { reason } => ("disconnected", reason.clone()),
            ConnectionState::Revoked { message } => ("revoked", message.clone()),
        };
        self.notify(Notice::Connection { state, detail });
    }
}

/// Calls `handler.confirm(request)`; an exception or a result that is not
/// an `Answer` is logged and denies with reason `policy`.
fn ask(py: Python<'_>, handler: &Py<PyAny>, request: PyRequest, transaction_id: &str) -> Answer {
    let answer = Py::new(py, request)
        .and_then(|request| handler.bind(py).call_method1("confirm", (request,)))
        .and_then(|answer| {
            answer
                .cast::<PyAnswer>()
                .map(|answer| answer.get().0)
                .map_err(|_| {
                    pyo3::exceptions::PyTypeError::new_err(format!(
                        "confirm() returned {}, not assent_device.accept(...) or \
                         assent_device.deny(...)",
                        type_name(&answer)
                    ))
                })
        });
    answer.unwrap_or_else(|error| {
        log_error(
            py,
            &format!("handler.confirm failed for transaction {transaction_id}; denying (policy)"),
            error,
        );
        Answer::Deny(DenyReason::Policy)
    })
}

/// Tells the Python handler one notice, if it has the method; an exception
/// is logged.
pub(crate) fn deliver(py: Python<'_>, handler: &Py<PyAny>, notice: Notice) {
    let handler = handler.bind(py);
    let (method, called) = match notice {
        Notice::Withdrawn {
            transaction_id,
            reason,
        } => (
            "on_withdrawn",
            call_if_present(handler, "on_withdrawn", (transaction_id, reason)),
        ),
        Notice::Decided {
            transaction_id,
            state,
            applied,
        } => (
            "on_decided",
            call_if_present(handler, "on_decided", (transaction_id, state, applied)),
        ),
        Notice::Connection { state, detail } => (
            "on_connection",
            call_if_present(handler, "on_connection", (state, detail)),
        ),
    };
    if let Err(error) = called {
        log_error(py, &format!("handler.{method} raised"), error);
    }
}

fn call_if_present<'py>(
    handler: &Bound<'py, PyAny>,
    method: &str,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> PyResult<()> {
    if handler.hasattr(method)? {
        handler.call_method1(method, args)?;
    }
    Ok(())
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "an object".to_owned(), |name| name.to_string())
}

/// Logs `error` with its traceback on the `assent_device` logger (Python's
/// `logging`); if logging itself fails, Python's unraisable hook reports it.
pub(crate) fn log_error(py: Python<'_>, message: &str, error: PyErr) {
    let logged = (|| -> PyResult<()> {
        let logger = py
            .import("logging")?
            .call_method1("getLogger", ("assent_device",))?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("exc_info", error.value(py))?;
        logger.call_method("error", ("%s", message), Some(&kwargs))?;
        Ok(())
    })();
    if logged.is_err() {
        error.write_unraisable(py, None);
    }
}
