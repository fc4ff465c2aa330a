//! `Answer`, `accept()` and `deny()`: what a Python handler's `confirm`
//! returns.

use assent_device::{Answer, DenyReason};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// A handler's answer to one confirmation request; made by `accept()` or
/// `deny()`.
#[pyclass(frozen, module = "assent_device", name = "Answer")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct PyAnswer(pub(crate) Answer);

#[pymethods]
impl PyAnswer {
    /// True for an acceptance.
    #[getter]
    fn accepted(&self) -> bool {
        matches!(self.0, Answer::Accept { .. })
    }

    /// The number picked under number matching, or None.
    #[getter]
    fn number(&self) -> Option<u32> {
        match self.0 {
            Answer::Accept { number } => number,
            Answer::Deny(_) => None,
        }
    }

    /// The denial's reason (`not_me`, `cancelled_by_user`, `policy`), or
    /// None for an acceptance.
    #[getter]
    fn reason(&self) -> Option<&'static str> {
        match self.0 {
            Answer::Accept { .. } => None,
            Answer::Deny(reason) => Some(reason.as_str()),
        }
    }

    fn __repr__(&self) -> String {
        match self.0 {
            Answer::Accept { number: None } => "accept()".to_owned(),
            Answer::Accept {
                number: Some(number),
            } => format!("accept(number={number})"),
            Answer::Deny(reason) => format!("deny('{}')", reason.as_str()),
        }
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyAnswer>()
            .is_ok_and(|other| other.get().0 == self.0)
    }

    fn __hash__(&self) -> u64 {
        match self.0 {
            Answer::Accept { number } => u64::from(number.unwrap_or(0)) + 1,
            Answer::Deny(reason) => match reason {
                DenyReason::NotMe => 1 << 40,
                DenyReason::CancelledByUser => 2 << 40,
                DenyReason::Policy => 3 << 40,
            },
        }
    }
}

/// Approve the login. Under number matching, `number` must be the one the
/// login page shows (one of `request.number_choices`); otherwise leave it
/// None. An acceptance that does not answer the request's number choices
/// is sent as a denial with reason "policy".
#[pyfunction]
#[pyo3(signature = (number=None))]
pub(crate) fn accept(number: Option<u32>) -> PyAnswer {
    PyAnswer(Answer::Accept { number })
}

/// Refuse the login. `reason` is "not_me" (the person did not try to log
/// in: the relying party sees a fraud report), "cancelled" (the person gave
/// up on the question; "cancelled_by_user" is accepted too) or "policy" (a
/// rule refused it). Raises ValueError for anything else.
#[pyfunction]
pub(crate) fn deny(reason: &str) -> PyResult<PyAnswer> {
    DenyReason::parse(reason)
        .map(|reason| PyAnswer(Answer::Deny(reason)))
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "unknown deny reason {reason:?}: expected \"not_me\", \"cancelled\" or \"policy\""
            ))
        })
}
