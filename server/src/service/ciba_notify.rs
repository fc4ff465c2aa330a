//! CIBA ping and push delivery (CIBA Core §10), a worker per replica: it
//! claims, with a lease, a ping or push client's request whose transaction
//! has ended (one replica posts each at a time; another takes over when the
//! lease ends), builds the notification from the stored outcome, and POSTs
//! it to the client's notification endpoint with the request's
//! `client_notification_token` as bearer — the endpoint resolved and held
//! to the destination rule before every POST (DNS rebinding), no redirect
//! followed, bounded in time and bytes read (`webhook_client`). A 2xx ends
//! it and clears the kept `auth_req_id`; anything else is retried after
//! 1 s doubling to a minute, for [`NOTIFY_ATTEMPTS`] attempts. Nothing is
//! kept in memory between attempts: the row is the state.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng as _;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::ciba::{CibaError, CibaService};
use super::webhook_client::{PostOutcome, post};
use crate::domain::ciba::{AuthReqId, DeliveryMode, NOTIFY_ATTEMPTS, notify_retry_delay};
use crate::domain::webhook::WebhookUrl;
use crate::domain::{Clock, TransactionState};
use crate::store::{CibaNotification, NotifyFailure, Store};

/// How notifications run on this replica.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// Whether endpoints may resolve to private and other non-global
    /// addresses.
    pub allow_private: bool,
    /// Notifications posted at once by this replica.
    pub concurrency: usize,
    /// How long one POST may take.
    pub request_timeout: Duration,
    /// How long a claimed notification stays this replica's.
    pub lease: Duration,
    /// How often due notifications are looked for.
    pub poll: Duration,
}

/// Posts the pings and pushes of every notified CIBA client.
pub struct CibaNotifier {
    ciba: Arc<CibaService>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: NotifySettings,
    /// The lease owner this replica writes.
    owner: Uuid,
}

impl CibaNotifier {
    /// A worker over `ciba`'s provider and `store`.
    pub fn new(
        ciba: Arc<CibaService>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: NotifySettings,
    ) -> Self {
        Self {
            ciba,
            store,
            clock,
            settings,
            owner: Uuid::new_v4(),
        }
    }

    /// Claims and posts until `stop`; a notification in flight then is
    /// left to its lease (it is posted again, at least once).
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut posts = JoinSet::new();
        loop {
            while posts.len() < self.settings.concurrency.max(1) {
                let now = self.clock.now();
                let until = now + delta(self.settings.lease);
                match self
                    .store
                    .claim_ciba_notification(self.owner, until, now)
                    .await
                {
                    Ok(Some(claimed)) => {
                        let worker = Arc::clone(&self);
                        posts.spawn(async move { worker.notify(claimed).await });
                    }
                    Ok(None) => break,
                    Err(error) => {
                        tracing::warn!(%error, "claiming a CIBA notification failed");
                        break;
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(self.settings.poll) => {}
                Some(_) = posts.join_next(), if !posts.is_empty() => {}
            }
        }
        posts.abort_all();
        while posts.join_next().await.is_some() {}
    }

    /// One attempt at `claimed`, recorded.
    #[tracing::instrument(skip_all, fields(transaction_id = %claimed.request.transaction_id))]
    async fn notify(&self, claimed: CibaNotification) {
        let hash = claimed.request.id_hash.clone();
        let result = match self.attempt(&claimed).await {
            Ok(()) => {
                tracing::info!("CIBA notification delivered");
                self.store
                    .ciba_notification_delivered(&hash, self.owner, self.clock.now())
                    .await
            }
            Err(failure) => {
                let attempts = claimed.request.notify_attempts.saturating_add(1);
                let give_up = failure.is_final() || attempts >= NOTIFY_ATTEMPTS;
                let jitter: f64 = rand::rng().random();
                let delay = notify_retry_delay(attempts, jitter);
                tracing::info!(attempts, give_up, error = %failure.why(), "CIBA notification failed");
                let failure = NotifyFailure {
                    next_attempt_at: self.clock.now() + delta(delay),
                    error: failure.why(),
                    give_up,
                };
                self.store
                    .ciba_notification_failed(&hash, self.owner, &failure)
                    .await
            }
        };
        match result {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("a CIBA notification's lease ran out before it was recorded")
            }
            Err(error) => tracing::warn!(%error, "recording a CIBA notification failed"),
        }
    }

    /// Builds and posts the notification; `Ok` after a 2xx.
    async fn attempt(&self, claimed: &CibaNotification) -> Result<(), Failure> {
        let request = &claimed.request;
        let client = self.ciba.client(request.application_id).await?;
        let (Some(endpoint), Some(token)) = (
            client.notification_endpoint.as_deref(),
            request.notification_token.as_deref(),
        ) else {
            return Err(Failure::Final(
                "the client is no longer a ping or push client".to_owned(),
            ));
        };
        let url = WebhookUrl::parse(endpoint)
            .map_err(|e| Failure::Final(format!("notification endpoint: {e}")))?;
        let id = AuthReqId::parse(&claimed.auth_req_id)
            .ok_or_else(|| Failure::Final("the kept auth_req_id does not parse".to_owned()))?;
        let body = match client.mode {
            DeliveryMode::Poll => {
                return Err(Failure::Final("the client polls now".to_owned()));
            }
            // §10.2: the ping says only which request is ready.
            DeliveryMode::Ping => json!({ "auth_req_id": id.as_str() }),
            DeliveryMode::Push => {
                let transaction = self.ciba.transaction(request).await?;
                let now = self.clock.now();
                match transaction.state_at(now) {
                    TransactionState::Accepted => {
                        // The tokens are issued here; the endpoint is closed
                        // to a push client, so this is the only way out.
                        self.store
                            .redeem_ciba_request(&request.id_hash, now)
                            .await
                            .map_err(|e| Failure::Retry(e.to_string()))?;
                        let tokens = self.ciba.tokens(&client, &id, &transaction).await?;
                        json!({
                            "auth_req_id": id.as_str(),
                            "id_token": tokens.id_token,
                            "access_token": tokens.access_token,
                            "token_type": tokens.token_type,
                            "expires_in": tokens.expires_in,
                        })
                    }
                    // §10.3.1: the error push.
                    TransactionState::Expired => json!({
                        "auth_req_id": id.as_str(),
                        "error": "expired_token",
                        "error_description": "the request expired unanswered",
                    }),
                    TransactionState::Pending | TransactionState::Scanned => {
                        return Err(Failure::Retry("the request is still open".to_owned()));
                    }
                    TransactionState::Denied
                    | TransactionState::Cancelled
                    | TransactionState::Failed => json!({
                        "auth_req_id": id.as_str(),
                        "error": "access_denied",
                        "error_description": "the user denied the request",
                    }),
                }
            }
        };
        let headers = [("authorization", format!("Bearer {token}"))];
        match post(
            &url,
            self.settings.allow_private,
            &headers,
            Bytes::from(body.to_string()),
            self.settings.request_timeout,
        )
        .await
        {
            PostOutcome::Answered(status) if (200..300).contains(&status) => Ok(()),
            PostOutcome::Answered(status) => Err(Failure::Retry(format!("HTTP {status}"))),
            PostOutcome::Failed(why) => Err(Failure::Retry(why)),
        }
    }
}

/// Why an attempt failed.
enum Failure {
    /// Worth another attempt.
    Retry(String),
    /// No attempt can succeed (the client changed mode, say).
    Final(String),
}

impl Failure {
    fn is_final(&self) -> bool {
        matches!(self, Self::Final(_))
    }

    fn why(&self) -> String {
        match self {
            Self::Retry(why) | Self::Final(why) => why.clone(),
        }
    }
}

impl From<CibaError> for Failure {
    fn from(error: CibaError) -> Self {
        Self::Retry(error.to_string())
    }
}

fn delta(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::seconds(10))
}
