//! The views of the commands that create something: enrollment codes, OTP
//! logins and push logins.

use assent_proto::v1::{
    CreateEnrollmentResponse, CreateOtpAuthenticationResponse, CreatePushAuthenticationResponse,
};
use serde::Serialize;

use super::{non_empty, rfc3339};

/// `assent enrollment create`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnrollmentView {
    /// The single-use enrollment code.
    pub code: String,
    /// When the code stops working.
    pub expires_at: Option<String>,
    /// The user the code enrolls a device for.
    pub user_id: Option<String>,
    /// The application's display name.
    pub application_name: Option<String>,
    /// What the enrollment QR code holds: `assent://enroll?…` with the
    /// code, the server the device enrolls with and the application's name
    /// (`assent_proto::enrollment_qr`).
    pub qr_payload: String,
}

impl EnrollmentView {
    /// The view of `response`, for a device that reaches the server at
    /// `server`.
    pub fn new(response: &CreateEnrollmentResponse, server: &str) -> Self {
        let application_name = non_empty(&response.application_name);
        let qr = assent_proto::enrollment_qr::EnrollmentQr {
            server: Some(server.to_owned()),
            code: response.code.clone(),
            application_name: application_name.clone(),
        };
        Self {
            code: response.code.clone(),
            expires_at: rfc3339(response.expires_at.as_ref()),
            user_id: non_empty(&response.user_id),
            application_name,
            qr_payload: qr.to_payload(),
        }
    }
}

/// `assent login otp`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoginView {
    /// The new transaction.
    pub transaction_id: String,
    /// The one-time password.
    pub otp: String,
    /// When the OTP stops working.
    pub expires_at: Option<String>,
    /// The text to encode in the login page's QR code.
    pub qr_payload: String,
}

impl From<&CreateOtpAuthenticationResponse> for LoginView {
    fn from(response: &CreateOtpAuthenticationResponse) -> Self {
        Self {
            transaction_id: response.transaction_id.clone(),
            otp: response.otp.clone(),
            expires_at: rfc3339(response.expires_at.as_ref()),
            // An older server may leave it empty; the OTP itself is what agents accept.
            qr_payload: non_empty(&response.qr_payload).unwrap_or_else(|| response.otp.clone()),
        }
    }
}

/// `assent login push`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PushLoginView {
    /// The new transaction.
    pub transaction_id: String,
    /// When the push stops being answerable.
    pub expires_at: Option<String>,
    /// The number to show on the login page; null without number matching.
    pub number: Option<u32>,
    /// How many of the user's devices were connected and got the request at once.
    pub devices_reached: u32,
}

impl From<&CreatePushAuthenticationResponse> for PushLoginView {
    fn from(response: &CreatePushAuthenticationResponse) -> Self {
        Self {
            transaction_id: response.transaction_id.clone(),
            expires_at: rfc3339(response.expires_at.as_ref()),
            number: (response.number != 0).then_some(response.number),
            devices_reached: response.devices_reached,
        }
    }
}

#[cfg(test)]
mod tests {
    use prost_types::Timestamp;
    use serde_json::json;

    use super::*;

    #[test]
    fn login_falls_back_to_the_otp_as_qr_payload() {
        let response = CreateOtpAuthenticationResponse {
            transaction_id: "t".into(),
            otp: "b3Rw".into(),
            ..CreateOtpAuthenticationResponse::default()
        };
        assert_eq!(LoginView::from(&response).qr_payload, "b3Rw");
    }

    #[test]
    fn push_login_number_is_null_without_number_matching() {
        let response = CreatePushAuthenticationResponse {
            transaction_id: "t-1".into(),
            expires_at: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            number: 0,
            devices_reached: 0,
        };
        let value = serde_json::to_value(PushLoginView::from(&response)).unwrap();
        assert_eq!(
            value,
            json!({
                "transaction_id": "t-1",
                "expires_at": "2023-11-14T22:13:20Z",
                "number": null,
                "devices_reached": 0,
            })
        );
        let matched = CreatePushAuthenticationResponse {
            number: 42,
            devices_reached: 2,
            ..response
        };
        let value = serde_json::to_value(PushLoginView::from(&matched)).unwrap();
        assert_eq!(value["number"], 42);
        assert_eq!(value["devices_reached"], 2);
    }
}
