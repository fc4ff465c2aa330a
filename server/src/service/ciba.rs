//! OpenID CIBA's use cases (docs/ciba.md): authenticating a client (an
//! application, its API key the secret), starting a backchannel request as
//! a push login (the push use case, so its anti-fatigue and rate limits
//! apply), answering the token endpoint from the database's outcome, and
//! the ID token with the device's decision evidence.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use assent_proto::signing::{self, SignedVerdict};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use serde_json::json;

use super::ciba_tokens::IdTokenSigner;
use super::{Caller, CreatePushInput, ServiceError, Services, reason};
use crate::domain::ciba::{self, AuthReqId, DeliveryMode, IdTokenAlg};
use crate::domain::{
    ApplicationId, Clock, Context, Message, Transaction, TransactionState, UserId,
};
use crate::store::{CibaClient, CibaRequest, Store};

/// How long an ID token (and the access token) is valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// The shown text when a client sends no `binding_message`.
const DEFAULT_MESSAGE: &str = "Sign-in request";

pub use super::ciba_types::{BcAuthorizeInput, BcAuthorized, CibaError, TokenResponse};

/// The CIBA provider's use cases.
pub struct CibaService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    services: Arc<Services>,
    signer: IdTokenSigner,
    issuer: String,
}

impl std::fmt::Debug for CibaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CibaService")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl CibaService {
    /// The provider at `issuer` over `services`' push use case and `store`.
    pub fn new(store: Arc<dyn Store>, services: Arc<Services>, issuer: String) -> Self {
        let clock = Arc::clone(services.clock());
        Self {
            signer: IdTokenSigner::new(Arc::clone(&store), Arc::clone(&clock)),
            store,
            clock,
            services,
            issuer,
        }
    }

    /// The issuer (the public base URL).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The ID-token keys.
    pub fn signer(&self) -> &IdTokenSigner {
        &self.signer
    }

    /// Checks a client: `client_id` is the application id, the secret one
    /// of its API keys, checked as gRPC checks keys (a source sending too
    /// many wrong ones is held back on both ports alike).
    pub async fn authenticate(
        &self,
        client_id: &str,
        secret: &str,
        source: Option<std::net::IpAddr>,
    ) -> Result<Caller, CibaError> {
        let caller = match self.services.keys.authenticate(secret, source).await {
            Ok(caller) => caller,
            Err(ServiceError::Unauthenticated(_)) => return Err(CibaError::InvalidClient),
            Err(other) => return Err(other.into()),
        };
        if caller.application.id.to_string() != client_id {
            return Err(CibaError::InvalidClient);
        }
        Ok(caller)
    }

    /// The client's settings; an application never configured is a poll
    /// client signed with RS256.
    pub(super) async fn client(&self, app: ApplicationId) -> Result<CibaClient, CibaError> {
        Ok(self
            .store
            .ciba_client(app)
            .await
            .map_err(ServiceError::from)?
            .unwrap_or(CibaClient {
                application_id: app,
                mode: DeliveryMode::Poll,
                notification_endpoint: None,
                id_token_alg: IdTokenAlg::Rs256,
            }))
    }

    /// Starts a backchannel request: a push to the user's devices.
    pub async fn authorize(
        &self,
        caller: &Caller,
        input: BcAuthorizeInput,
    ) -> Result<BcAuthorized, CibaError> {
        let scope = input.scope.unwrap_or_default();
        if !scope.split(' ').any(|s| s == "openid") {
            return Err(CibaError::InvalidScope(
                "scope must contain openid".to_owned(),
            ));
        }
        let hint = input.login_hint.ok_or_else(|| {
            CibaError::InvalidRequest(
                "login_hint (the user id) is required; login_hint_token and id_token_hint are \
                 not supported"
                    .to_owned(),
            )
        })?;
        let user_id = UserId::parse(&hint)
            .map_err(|e| CibaError::InvalidRequest(format!("login_hint: {e}")))?;
        let message = Message::parse(input.binding_message.as_deref().unwrap_or(DEFAULT_MESSAGE))
            .map_err(|e| CibaError::InvalidRequest(format!("binding_message: {e}")))?;
        let ttl = ciba::requested_expiry(input.requested_expiry.as_deref())
            .map_err(|e| CibaError::InvalidRequest(e.to_string()))?;
        let client = self.client(caller.application.id).await?;
        let token = match (client.mode.is_notified(), input.client_notification_token) {
            (true, Some(token)) if ciba::is_notification_token(&token) => Some(token),
            (true, _) => {
                return Err(CibaError::InvalidRequest(
                    "client_notification_token is required in ping and push modes: 16 to 1024 \
                     printable ASCII characters"
                        .to_owned(),
                ));
            }
            (false, _) => None,
        };
        let push = CreatePushInput {
            user_id,
            message,
            ttl,
            context: Context::parse(BTreeMap::new()).map_err(ServiceError::from)?,
            // The login page of CIBA is the client's own screen, where no
            // number can be shown: the binding_message is what the user
            // compares.
            number_matching: false,
            binding: None,
        };
        let mut rng = crate::domain::secure_rng();
        let created = match self
            .services
            .push
            .create_push_authentication(caller, push, &mut rng)
            .await
        {
            Ok(created) => created,
            Err(ServiceError::FailedPrecondition(refused))
                if refused.reason == reason::NO_ENROLLED_DEVICE =>
            {
                return Err(CibaError::UnknownUserId(refused.to_string()));
            }
            Err(other) => return Err(other.into()),
        };
        let auth_req_id = AuthReqId::generate(&mut rng);
        let interval = ciba::POLL_INTERVAL.as_secs();
        let request = CibaRequest {
            id_hash: auth_req_id.hash(),
            application_id: caller.application.id,
            transaction_id: created.transaction.id,
            notification_token: token,
            interval_seconds: i64::try_from(interval).unwrap_or(i64::MAX),
            created_at: self.clock.now(),
            last_poll_at: None,
            redeemed_at: None,
            notified_at: None,
            notify_attempts: 0,
        };
        // A notified client's id is kept until it is notified (the ping and
        // the push carry it); a poll client's never is.
        let notify = request
            .notification_token
            .is_some()
            .then_some(auth_req_id.as_str());
        self.store
            .insert_ciba_request(&request, notify)
            .await
            .map_err(ServiceError::from)?;
        tracing::info!(transaction_id = %created.transaction.id, "ciba request started");
        Ok(BcAuthorized {
            auth_req_id,
            expires_in: ttl.as_secs(),
            interval,
        })
    }

    /// Answers the token endpoint for `auth_req_id`.
    pub async fn token(
        &self,
        caller: &Caller,
        auth_req_id: &str,
    ) -> Result<TokenResponse, CibaError> {
        let id = AuthReqId::parse(auth_req_id).ok_or(CibaError::InvalidGrant)?;
        let hash = id.hash();
        let request = self
            .store
            .ciba_request(&hash)
            .await
            .map_err(ServiceError::from)?
            .filter(|r| r.application_id == caller.application.id)
            .ok_or(CibaError::InvalidGrant)?;
        let client = self.client(caller.application.id).await?;
        if !client.mode.may_poll() {
            return Err(CibaError::UnauthorizedClient(
                "this client is registered for push delivery; it receives tokens at its \
                 notification endpoint and may not use the token endpoint"
                    .to_owned(),
            ));
        }
        if request.redeemed_at.is_some() {
            return Err(CibaError::InvalidGrant);
        }
        let now = self.clock.now();
        let interval = Duration::from_secs(u64::try_from(request.interval_seconds).unwrap_or(0));
        let on_time = self
            .store
            .poll_ciba_request(&hash, now, ciba::poll_allowed_after(now, interval))
            .await
            .map_err(ServiceError::from)?;
        let transaction = self.transaction(&request).await?;
        match transaction.state_at(now) {
            TransactionState::Accepted => {}
            TransactionState::Pending | TransactionState::Scanned if !on_time => {
                return Err(CibaError::SlowDown);
            }
            TransactionState::Pending | TransactionState::Scanned => {
                return Err(CibaError::AuthorizationPending);
            }
            TransactionState::Expired => return Err(CibaError::ExpiredToken),
            TransactionState::Denied | TransactionState::Cancelled | TransactionState::Failed => {
                return Err(CibaError::AccessDenied);
            }
        }
        if !self
            .store
            .redeem_ciba_request(&hash, now)
            .await
            .map_err(ServiceError::from)?
        {
            return Err(CibaError::InvalidGrant);
        }
        self.tokens(&client, &id, &transaction).await
    }

    /// The transaction `request` waits on.
    pub(super) async fn transaction(
        &self,
        request: &CibaRequest,
    ) -> Result<Transaction, CibaError> {
        Ok(self
            .store
            .find_transaction(request.application_id, request.transaction_id)
            .await
            .map_err(ServiceError::from)?
            .ok_or(ServiceError::NotFound("transaction"))?)
    }

    /// The ID token and access token of an accepted transaction.
    pub(super) async fn tokens(
        &self,
        client: &CibaClient,
        id: &AuthReqId,
        transaction: &Transaction,
    ) -> Result<TokenResponse, CibaError> {
        let now = self.clock.now();
        let evidence = self.evidence(transaction).await?;
        let mut access = [0u8; 32];
        crate::domain::secure_rng().fill_bytes(&mut access);
        let access_token = URL_SAFE_NO_PAD.encode(access);
        let claims = json!({
            "iss": self.issuer,
            "sub": transaction.user_id.as_ref().map(|u| u.as_str()).unwrap_or_default(),
            "aud": client.application_id.to_string(),
            "iat": now.timestamp(),
            "exp": now.timestamp() + i64::try_from(TOKEN_LIFETIME.as_secs()).unwrap_or(0),
            "auth_time": transaction.completed_at.unwrap_or(now).timestamp(),
            "urn:openid:params:jwt:claim:auth_req_id": id.as_str(),
            // RFC 8176: proof of possession of a software-secured key (the
            // device's Ed25519 key, in the agent's 0600 file).
            "amr": ["swk"],
            // OIDC Core §3.1.3.6, required in a CIBA push (§10.3.1).
            "at_hash": ciba::at_hash(client.id_token_alg, &access_token),
            "assent_evidence": evidence,
        });
        let id_token = self.signer.sign(client.id_token_alg, &claims).await?;
        Ok(TokenResponse {
            id_token,
            access_token,
            token_type: "Bearer",
            expires_in: TOKEN_LIFETIME.as_secs(),
        })
    }

    /// The device's signed decision and the fields of the bytes it signed
    /// (`assent.v1.decision`, docs/relying-party.md), with its public key.
    async fn evidence(&self, t: &Transaction) -> Result<serde_json::Value, CibaError> {
        let answer = t.answer.ok_or(ServiceError::NotFound("decision"))?;
        let device_id = t.device_id.ok_or(ServiceError::NotFound("device"))?;
        let device = self
            .store
            .find_device(device_id)
            .await
            .map_err(ServiceError::from)?
            .ok_or(ServiceError::NotFound("device"))?;
        Ok(json!({
            "transaction_id": t.id.to_string(),
            "application_id": t.application_id.to_string(),
            "device_id": device_id.to_string(),
            "device_key_id": signing::key_id(&device.public_key),
            "device_public_key": STANDARD.encode(device.public_key),
            "nonce": STANDARD.encode(t.nonce.unwrap_or_default()),
            "decision": match answer.verdict {
                SignedVerdict::Accept => "accept",
                SignedVerdict::Deny => "deny",
            },
            "reason": answer.reason.map(|r| r.as_str()).unwrap_or_default(),
            "display_hash": STANDARD.encode(signing::display_hash(&t.message, &t.context)),
            "picked_number": answer.number,
            "message": t.message,
            "context": t.context,
            "signature": STANDARD.encode(t.decision_signature.clone().unwrap_or_default()),
        }))
    }
}
