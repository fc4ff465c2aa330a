//! Relying parties' API keys.

use std::sync::Arc;

use super::{Deps, ServiceError};
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
    deps: Arc<Deps>,
}

impl KeyService {
    /// The use case over shared dependencies.
    pub fn new(deps: Arc<Deps>) -> Self {
        Self { deps }
    }

    /// Checks an API key (constant-time) and returns its application. Keys
    /// are read at most every 0.5 s (`KEY_CACHE_TTL`), so a revoked
    /// key stops working within that time on every replica.
    pub async fn authenticate(&self, key_text: &str) -> Result<Caller, ServiceError> {
        let refused = || {
            ServiceError::Unauthenticated(
                "the API key is not valid (unknown, revoked or mistyped); use a key printed by \
                 `assent-server app create` or `app key create`, sent as `authorization: Bearer \
                 <api key>`"
                    .to_owned(),
            )
        };
        let key = ApiKey::parse(key_text).map_err(|_| refused())?;
        let record = self.deps.api_key(key.id()).await?.ok_or_else(refused)?;
        if !key.matches(&record.secret_hash) {
            return Err(refused());
        }
        Ok(Caller {
            key_id: record.id,
            application: record.application,
        })
    }
}
