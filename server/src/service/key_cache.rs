//! API keys as last read from the database, shared by every call of a key
//! on this replica: one read per key and period, not per call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};

use super::ServiceError;
use crate::domain::{ApiKeyId, Clock};
use crate::store::{ApiKeyRecord, Store};

/// How long a key read from the database is trusted: a revoked key stops
/// working within this time on every replica.
pub const KEY_CACHE_TTL: chrono::TimeDelta = chrono::TimeDelta::milliseconds(500);
/// Keys remembered at most; past it, the stale ones are forgotten.
const KEY_CACHE_MAX: usize = 10_000;

/// A key lookup's answer and when it was read.
struct CachedKey {
    record: Option<ApiKeyRecord>,
    read_at: DateTime<Utc>,
}

/// The unrevoked API keys, each read at most every [`KEY_CACHE_TTL`].
pub struct KeyCache {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    keys: Mutex<HashMap<ApiKeyId, CachedKey>>,
}

impl KeyCache {
    /// An empty cache over `store`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The unrevoked API key with this id, read from the database at most
    /// `KEY_CACHE_TTL` (0.5 s) ago.
    pub async fn api_key(&self, id: ApiKeyId) -> Result<Option<ApiKeyRecord>, ServiceError> {
        let now = self.clock.now();
        {
            let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(cached) = keys.get(&id)
                && now - cached.read_at < KEY_CACHE_TTL
                && now >= cached.read_at
            {
                return Ok(cached.record.clone());
            }
        }
        let record = self.store.find_api_key(id).await?;
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= KEY_CACHE_MAX {
            keys.retain(|_, cached| now - cached.read_at < KEY_CACHE_TTL);
        }
        keys.insert(
            id,
            CachedKey {
                record: record.clone(),
                read_at: now,
            },
        );
        Ok(record)
    }
}
