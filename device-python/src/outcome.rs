//! `Outcome`: how a handed-in OTP ended.

use assent_device::OtpOutcome;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// How a handed-in OTP ended: `ok` only when the login was accepted;
/// `state` is the transaction's final state ("ACCEPTED", "DENIED",
/// "EXPIRED", "CANCELLED", "FAILED"); `error` says why there is no state
/// (malformed, unknown, expired or used OTP, server unreachable, timeout,
/// device stopped).
#[pyclass(frozen, get_all, module = "assent_device", name = "Outcome")]
#[derive(Debug, Clone)]
pub(crate) struct PyOutcome {
    /// True only when the login was accepted.
    ok: bool,
    /// The transaction's final state, when it reached one.
    state: Option<String>,
    /// The transaction the OTP belongs to, when known.
    transaction_id: Option<String>,
    /// The reason stored with a denial or given with a cancellation.
    reason: Option<String>,
    /// Why there is no state.
    error: Option<String>,
}

impl From<OtpOutcome> for PyOutcome {
    fn from(outcome: OtpOutcome) -> Self {
        Self {
            ok: outcome.ok,
            state: outcome.state,
            transaction_id: outcome.transaction_id,
            reason: outcome.reason,
            error: outcome.error,
        }
    }
}

#[pymethods]
impl PyOutcome {
    /// The outcome as a dict with the same keys as the attributes.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("ok", self.ok)?;
        dict.set_item("state", &self.state)?;
        dict.set_item("transaction_id", &self.transaction_id)?;
        dict.set_item("reason", &self.reason)?;
        dict.set_item("error", &self.error)?;
        Ok(dict)
    }

    fn __repr__(&self) -> String {
        format!(
            "Outcome(ok={}, state={}, transaction_id={}, reason={}, error={})",
            if self.ok { "True" } else { "False" },
            py_text(self.state.as_deref()),
            py_text(self.transaction_id.as_deref()),
            py_text(self.reason.as_deref()),
            py_text(self.error.as_deref()),
        )
    }
}

/// An optional text as Python would print it in a repr.
pub(crate) fn py_text(text: Option<&str>) -> String {
    text.map_or_else(|| "None".to_owned(), |text| format!("{text:?}"))
}
