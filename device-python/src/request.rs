//! `Request`: a confirmation request as a Python handler sees it.

use std::collections::BTreeMap;
use std::sync::Weak;

use assent_device::{Kind, Request, Withdrawn};
use chrono::SecondsFormat;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::outcome::py_text;
use crate::runtime::DeviceRuntime;

/// A confirmation request: who asks (application), for whom (user), what to
/// show (message, context), until when (expires_at), and under number
/// matching the three numbers to pick from.
#[pyclass(frozen, module = "assent_device", name = "Request")]
#[derive(Debug)]
pub(crate) struct PyRequest {
    /// The transaction to decide on.
    #[pyo3(get)]
    transaction_id: String,
    /// "OTP" (the device handed in an OTP) or "PUSH" (the server pushed it).
    #[pyo3(get)]
    kind: &'static str,
    /// The application's id.
    #[pyo3(get)]
    application_id: String,
    /// The application's display name.
    #[pyo3(get)]
    application_name: String,
    /// The user the device belongs to.
    #[pyo3(get)]
    user_id: String,
    /// The text to show.
    #[pyo3(get)]
    message: String,
    /// Extra facts to show, key → value.
    #[pyo3(get)]
    context: BTreeMap<String, String>,
    /// When the request stops being answerable (ISO 8601, UTC), or None.
    #[pyo3(get)]
    expires_at: Option<String>,
    /// The numbers to pick from under number matching (empty otherwise).
    #[pyo3(get)]
    number_choices: Vec<u32>,
    /// Fires when the server withdraws the request (only on requests given
    /// to `confirm`), and the runtime whose timer waits for it.
    withdrawn: Option<(Withdrawn, Weak<DeviceRuntime>)>,
}

impl PyRequest {
    /// The Python view of `request`; `withdrawn` is given for the request
    /// being put to `confirm`.
    pub(crate) fn new(
        request: Request,
        withdrawn: Option<(Withdrawn, Weak<DeviceRuntime>)>,
    ) -> Self {
        Self {
            kind: match request.kind {
                Kind::Otp => "OTP",
                Kind::Push => "PUSH",
            },
            expires_at: request
                .expires_at
                .map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, false)),
            number_choices: request.number_choices.as_slice().to_vec(),
            transaction_id: request.transaction_id,
            application_id: request.application_id,
            application_name: request.application_name,
            user_id: request.user_id,
            message: request.message,
            context: request.context,
            withdrawn,
        }
    }
}

#[pymethods]
impl PyRequest {
    /// Whether the server has withdrawn this request (cancelled by the
    /// relying party, expired, answered on another device, device revoked).
    /// Always False on the requests `Device.pending()` lists.
    fn is_withdrawn(&self) -> bool {
        self.withdrawn
            .as_ref()
            .is_some_and(|(withdrawn, _)| withdrawn.is_withdrawn())
    }

    /// Waits until the server withdraws this request, at most `timeout`
    /// seconds (None: no limit), without holding the GIL; returns whether it
    /// was withdrawn. A handler that asks a person uses it to close its
    /// dialog. Returns False at once on the requests `Device.pending()` lists.
    #[pyo3(signature = (timeout=None))]
    fn wait_withdrawn(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let Some((withdrawn, runtime)) = &self.withdrawn else {
            return Ok(false);
        };
        if withdrawn.is_withdrawn() {
            return Ok(true);
        }
        let limit = timeout.map(crate::device::seconds).transpose()?;
        // The device has stopped: every request it held was withdrawn then.
        let Some(runtime) = runtime.upgrade() else {
            return Ok(withdrawn.is_withdrawn());
        };
        let withdrawn = withdrawn.clone();
        let waited = py.detach(move || {
            runtime.block_on(async move {
                match limit {
                    Some(limit) => tokio::time::timeout(limit, withdrawn.wait()).await.is_ok(),
                    None => {
                        withdrawn.wait().await;
                        true
                    }
                }
            })
        });
        Ok(waited.unwrap_or(true))
    }

    /// The request as a dict with the same keys as the attributes.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("transaction_id", &self.transaction_id)?;
        dict.set_item("kind", self.kind)?;
        dict.set_item("application_id", &self.application_id)?;
        dict.set_item("application_name", &self.application_name)?;
        dict.set_item("user_id", &self.user_id)?;
        dict.set_item("message", &self.message)?;
        dict.set_item("context", &self.context)?;
        dict.set_item("expires_at", &self.expires_at)?;
        dict.set_item("number_choices", &self.number_choices)?;
        Ok(dict)
    }

    fn __repr__(&self) -> String {
        format!(
            "Request(transaction_id={:?}, kind={:?}, application_name={:?}, user_id={:?}, \
             message={:?}, expires_at={}, number_choices={:?})",
            self.transaction_id,
            self.kind,
            self.application_name,
            self.user_id,
            self.message,
            py_text(self.expires_at.as_deref()),
            self.number_choices,
        )
    }
}
