//! Relying parties' API keys, and the throttle of refused ones per source
//! address (a guesser is slowed down on every replica).

use std::net::IpAddr;
use std::sync::Arc;

use super::throttle::SourceThrottle;
use super::{KeyCache, ServiceError};
use crate::domain::{ApiKey, ApiKeyId};
use crate::store::Application;

/// An authenticated relying party.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key it used.
    pub key_id: ApiKeyId,
    /// Its application.
    pub application: Application,
}

/// Checks API keys.
pub struct KeyService {
    keys: Arc<KeyCache>,
    /// Refused keys per source address, across the replicas.
    refusals: SourceThrottle,
}

impl KeyService {
    /// Checks keys as `keys` last read them, a source refused too often
    /// held back by `refusals`.
    pub fn new(keys: Arc<KeyCache>, refusals: SourceThrottle) -> Self {
        Self { keys, refusals }
    }

    /// Checks an API key (constant-time) and returns its application. Keys
    /// are read at most every 0.5 s (`KEY_CACHE_TTL`), so a revoked
    /// key stops working within that time on every replica. A source that
    /// sent too many refused keys is refused (`RESOURCE_EXHAUSTED`, with
    /// the wait) before its key is looked at, until its allowance refills;
    /// `source` is the peer's address, `None` when unknown.
    pub async fn authenticate(
        &self,
        key_text: &str,
        source: Option<IpAddr>,
    ) -> Result<Caller, ServiceError> {
        self.refusals.check(source)?;
        match self.check(key_text).await {
            Err(error @ ServiceError::Unauthenticated(_)) => {
                tracing::warn!(?source, "API key refused");
                self.refusals.refused(source).await;
                Err(error)
            }
            other => other,
        }
    }

    async fn check(&self, key_text: &str) -> Result<Caller, ServiceError> {
        let refused = || {
            ServiceError::Unauthenticated(
                "the API key is not valid (unknown, revoked or mistyped); use a key printed by \
                 `assent-server app create` or `app key create`, sent as `authorization: Bearer \
                 <api key>`"
                    .to_owned(),
            )
        };
        let key = ApiKey::parse(key_text).map_err(|_| refused())?;
        let record = self.keys.api_key(key.id()).await?.ok_or_else(refused)?;
        if !key.matches(&record.secret_hash) {
            return Err(refused());
        }
        Ok(Caller {
            key_id: record.id,
            application: record.application,
        })
    }
}
