//! What the CIBA use cases (`ciba.rs`) take and give: the errors as CIBA
//! Core and RFC 6749 name them, the backchannel request's input and answer,
//! and the token response.

use super::ServiceError;
use crate::domain::ciba::AuthReqId;

/// A CIBA error as CIBA Core and RFC 6749 name it.
#[derive(Debug, thiserror::Error)]
pub enum CibaError {
    /// Malformed or missing parameters.
    #[error("{0}")]
    InvalidRequest(String),
    /// The scope lacks `openid`.
    #[error("{0}")]
    InvalidScope(String),
    /// Unknown client or wrong secret.
    #[error("client authentication failed")]
    InvalidClient,
    /// The client may not do this (its delivery mode).
    #[error("{0}")]
    UnauthorizedClient(String),
    /// The `login_hint` names no user with a device.
    #[error("{0}")]
    UnknownUserId(String),
    /// Unknown, foreign or already used `auth_req_id`.
    #[error("the auth_req_id is unknown, not this client's, or already used")]
    InvalidGrant,
    /// The user has not answered yet.
    #[error("the user has not answered yet")]
    AuthorizationPending,
    /// Polled faster than the interval.
    #[error("polled faster than the interval")]
    SlowDown,
    /// The request expired unanswered.
    #[error("the request expired")]
    ExpiredToken,
    /// The user denied (or the request was cancelled or failed).
    #[error("the user denied the request")]
    AccessDenied,
    /// A refusal of the push use case (rate limits, anti-fatigue) or a
    /// failure of the server.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// What `/bc-authorize` was sent, as text.
#[derive(Debug, Default, Clone)]
pub struct BcAuthorizeInput {
    /// `scope`.
    pub scope: Option<String>,
    /// `login_hint`: the user id.
    pub login_hint: Option<String>,
    /// `binding_message`.
    pub binding_message: Option<String>,
    /// `requested_expiry`, seconds.
    pub requested_expiry: Option<String>,
    /// `client_notification_token`.
    pub client_notification_token: Option<String>,
}

/// The answer of `/bc-authorize`.
#[derive(Debug)]
pub struct BcAuthorized {
    /// The request's id, given once.
    pub auth_req_id: AuthReqId,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// Least seconds between polls.
    pub interval: u64,
}

/// A successful token response.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenResponse {
    /// The signed ID token.
    pub id_token: String,
    /// An opaque bearer (no resource accepts it yet; see docs/ciba.md).
    pub access_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
    /// Seconds the tokens are valid.
    pub expires_in: u64,
}
