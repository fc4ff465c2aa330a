//! The one table from [`CibaError`] to an OAuth error response (RFC 6749
//! §5.2, CIBA Core §11 and §13): the code, the HTTP status, a description.
//! Anything unexpected is logged here once and leaves as `server_error`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::service::{CibaError, ServiceError};

impl IntoResponse for CibaError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::InvalidScope(_) => (StatusCode::BAD_REQUEST, "invalid_scope"),
            Self::InvalidClient => (StatusCode::UNAUTHORIZED, "invalid_client"),
            Self::UnauthorizedClient(_) => (StatusCode::BAD_REQUEST, "unauthorized_client"),
            Self::UnknownUserId(_) => (StatusCode::BAD_REQUEST, "unknown_user_id"),
            Self::InvalidGrant => (StatusCode::BAD_REQUEST, "invalid_grant"),
            Self::AuthorizationPending => (StatusCode::BAD_REQUEST, "authorization_pending"),
            Self::SlowDown => (StatusCode::BAD_REQUEST, "slow_down"),
            Self::ExpiredToken => (StatusCode::BAD_REQUEST, "expired_token"),
            Self::AccessDenied => (StatusCode::FORBIDDEN, "access_denied"),
            Self::Service(error) => service_code(error),
        };
        let description = match &self {
            Self::Service(ServiceError::Internal(_)) => "internal error".to_owned(),
            other => other.to_string(),
        };
        let mut response = (
            status,
            Json(json!({"error": code, "error_description": description})),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"assent\""),
            );
        }
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// A refusal of the push use case or a failure, as OAuth reads it: limits
/// and anti-fatigue are `access_denied` with 429 and their reason in the
/// description; a database outage is `temporarily_unavailable`.
fn service_code(error: &ServiceError) -> (StatusCode, &'static str) {
    match error {
        ServiceError::Input(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        ServiceError::ResourceExhausted(_) => (StatusCode::TOO_MANY_REQUESTS, "access_denied"),
        ServiceError::FailedPrecondition(_) | ServiceError::PermissionDenied(_) => {
            (StatusCode::FORBIDDEN, "access_denied")
        }
        ServiceError::Unavailable(_) | ServiceError::TryAgain(_) | ServiceError::Contention => {
            (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
        }
        other => {
            tracing::error!(error = ?other, "CIBA request failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "server_error")
        }
    }
}
