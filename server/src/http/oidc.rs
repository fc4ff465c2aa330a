//! The CIBA provider's routes: discovery, JWKS, `/bc-authorize`, `/token`.
//! Clients authenticate with `client_secret_basic` or `client_secret_post`:
//! the client id is the application id, the secret one of its API keys.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::domain::ciba::{DeliveryMode, IdTokenAlg};
use crate::service::ciba::BcAuthorizeInput;
use crate::service::{Caller, CibaError, CibaService};

/// The address a request came from (set per connection by the server).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::IpAddr);

/// The CIBA grant type.
pub const CIBA_GRANT: &str = "urn:openid:params:grant-type:ciba";

type Params = HashMap<String, String>;

/// The provider's routes over `ciba`.
pub fn router(ciba: Arc<CibaService>) -> Router {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/bc-authorize", post(bc_authorize))
        .route("/token", post(token))
        .with_state(ciba)
}

async fn discovery(State(ciba): State<Arc<CibaService>>) -> Json<serde_json::Value> {
    let issuer = ciba.issuer().trim_end_matches('/');
    let modes =
        [DeliveryMode::Poll, DeliveryMode::Ping, DeliveryMode::Push].map(DeliveryMode::as_str);
    let algs = IdTokenAlg::ALL.map(IdTokenAlg::as_str);
    Json(json!({
        "issuer": issuer,
        "backchannel_authentication_endpoint": format!("{issuer}/bc-authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "backchannel_token_delivery_modes_supported": modes,
        "backchannel_user_code_parameter_supported": false,
        "grant_types_supported": [CIBA_GRANT],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "backchannel_authentication_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post"],
        "id_token_signing_alg_values_supported": algs,
        "subject_types_supported": ["public"],
        "response_types_supported": ["id_token"],
        "scopes_supported": ["openid"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "amr",
            "urn:openid:params:jwt:claim:auth_req_id", "assent_evidence"],
    }))
}

async fn jwks(State(ciba): State<Arc<CibaService>>) -> Response {
    match ciba.signer().jwks().await {
        Ok(set) => Json(set).into_response(),
        Err(error) => CibaError::from(error).into_response(),
    }
}

async fn bc_authorize(
    State(ciba): State<Arc<CibaService>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Form(params): Form<Params>,
) -> Response {
    let caller = match client(&ciba, peer, &headers, &params).await {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    let take = |name: &str| params.get(name).cloned();
    let input = BcAuthorizeInput {
        scope: take("scope"),
        login_hint: take("login_hint"),
        binding_message: take("binding_message"),
        requested_expiry: take("requested_expiry"),
        client_notification_token: take("client_notification_token"),
    };
    match ciba.authorize(&caller, input).await {
        Ok(done) => Json(json!({
            "auth_req_id": done.auth_req_id.as_str(),
            "expires_in": done.expires_in,
            "interval": done.interval,
        }))
        .into_response(),
        Err(error) => error.into_response(),
    }
}

async fn token(
    State(ciba): State<Arc<CibaService>>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    Form(params): Form<Params>,
) -> Response {
    let caller = match client(&ciba, peer, &headers, &params).await {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    if params.get("grant_type").map(String::as_str) != Some(CIBA_GRANT) {
        return CibaError::InvalidRequest(format!("grant_type must be {CIBA_GRANT}"))
            .into_response();
    }
    let Some(auth_req_id) = params.get("auth_req_id") else {
        return CibaError::InvalidRequest("auth_req_id is required".to_owned()).into_response();
    };
    match ciba.token(&caller, auth_req_id).await {
        Ok(tokens) => ([(header::CACHE_CONTROL, "no-store")], Json(tokens)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// The client's credentials from `Authorization: Basic` or the form (not
/// both, RFC 6749 §2.3), checked.
async fn client(
    ciba: &CibaService,
    peer: Option<Extension<Peer>>,
    headers: &HeaderMap,
    params: &Params,
) -> Result<Caller, CibaError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "));
    let posted = (params.get("client_id"), params.get("client_secret"));
    let (id, secret) = match (basic, posted) {
        (Some(encoded), (_, None)) => {
            let decoded = STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or(CibaError::InvalidClient)?;
            let (id, secret) = decoded.split_once(':').ok_or(CibaError::InvalidClient)?;
            (form_decode(id), form_decode(secret))
        }
        (None, (Some(id), Some(secret))) => (id.clone(), secret.clone()),
        _ => return Err(CibaError::InvalidClient),
    };
    ciba.authenticate(&id, &secret, peer.map(|Extension(Peer(ip))| ip))
        .await
}

/// Undoes `application/x-www-form-urlencoded` (RFC 6749 §2.3.1 encodes the
/// id and secret so before Basic).
fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::form_decode;

    #[test]
    fn basic_credentials_are_form_decoded() {
        assert_eq!(form_decode("a%2Bb%3D%3D+c"), "a+b== c");
        assert_eq!(form_decode("plain"), "plain");
        assert_eq!(form_decode("bad%zz"), "bad%zz");
        assert_eq!(form_decode("end%4"), "end%4");
    }
}
