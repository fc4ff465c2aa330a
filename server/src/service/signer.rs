//! The server's event signatures: one Ed25519 key shared by every replica
//! of a database (made on first start, rotated by `assent-server keys
//! rotate`), signing each event over the canonical `assent.v1.event` bytes
//! ([`assent_proto::signing::event_bytes`]). Retired keys stay published,
//! so what they signed still verifies.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use assent_proto::signing::{self, EventPayload};
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signer as _, SigningKey};
use rand::{CryptoRng, RngCore};
use tokio::time::Instant;

use super::ServiceError;
use crate::domain::{ApplicationId, Clock};
use crate::store::{EventRecord, ServerKeyRecord, Store, StoreResult};

/// How long a replica signs with the key it read before reading which key
/// is current again (after a rotation, the old key signs at most this long).
const REFRESH: Duration = Duration::from_secs(30);

/// An event with the server's signature.
#[derive(Debug, Clone)]
pub struct SignedEvent {
    /// The application whose log holds it.
    pub application_id: ApplicationId,
    /// The event.
    pub record: EventRecord,
    /// The signing key's id.
    pub key_id: Arc<str>,
    /// Ed25519 over [`event_payload_bytes`].
    pub signature: [u8; 64],
}

/// The key a replica signs with.
struct ActiveKey {
    id: Arc<str>,
    key: SigningKey,
}

/// The canonical bytes the server signs for `record` of `app`.
pub fn event_payload_bytes(app: ApplicationId, record: &EventRecord) -> Vec<u8> {
    let app = app.to_string();
    let transaction = record
        .transaction_id
        .map(|t| t.to_string())
        .unwrap_or_default();
    let device = record.device_id.map(|d| d.to_string()).unwrap_or_default();
    signing::event_bytes(&EventPayload {
        application_id: &app,
        cursor: u64::try_from(record.cursor).unwrap_or_default(),
        event_type: record.event_type.as_str(),
        transaction_id: &transaction,
        user_id: record.user_id.as_ref().map_or("", |u| u.as_str()),
        device_id: &device,
        reason: record.reason.map_or("", |r| r.as_str()),
        fraud_reported: record.fraud_reported,
        binding: record.binding.as_deref().unwrap_or_default(),
        occurred_at_micros: record.occurred_at.timestamp_micros(),
    })
}

/// A fresh key, not stored yet.
pub fn new_server_key<R: RngCore + CryptoRng>(rng: &mut R, now: DateTime<Utc>) -> ServerKeyRecord {
    let mut secret_key = [0u8; 32];
    rng.fill_bytes(&mut secret_key);
    let public_key = SigningKey::from_bytes(&secret_key)
        .verifying_key()
        .to_bytes();
    ServerKeyRecord {
        id: signing::key_id(&public_key),
        public_key,
        secret_key,
        created_at: now,
        retired_at: None,
    }
}

/// Makes a new key current and retires the old one (which stays published).
pub async fn rotate<R: RngCore + CryptoRng>(
    store: &dyn Store,
    rng: &mut R,
    now: DateTime<Utc>,
) -> StoreResult<ServerKeyRecord> {
    let key = new_server_key(rng, now);
    store.add_server_key(&key, true).await?;
    Ok(key)
}

/// Signs events with the database's current key, read at most every
/// 30 s (and made on first use if the database has none).
pub struct EventSigner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    current: Mutex<Option<(Arc<ActiveKey>, Instant)>>,
}

impl std::fmt::Debug for EventSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSigner").finish_non_exhaustive()
    }
}

impl EventSigner {
    /// A signer with the keys of `store`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            current: Mutex::new(None),
        }
    }

    /// The key to sign with now.
    async fn key(&self) -> Result<Arc<ActiveKey>, ServiceError> {
        {
            let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((key, read_at)) = current.as_ref()
                && read_at.elapsed() < REFRESH
            {
                return Ok(Arc::clone(key));
            }
        }
        let store = self.store.as_ref();
        let record = match store.current_server_key().await? {
            Some(record) => record,
            None => {
                // First start: make one; a replica that raced us wins and
                // its key is read back.
                let fresh = new_server_key(&mut crate::domain::secure_rng(), self.clock.now());
                store.add_server_key(&fresh, false).await?;
                store.current_server_key().await?.ok_or_else(|| {
                    ServiceError::TryAgain("the server's signing key is being rotated".to_owned())
                })?
            }
        };
        let key = Arc::new(ActiveKey {
            id: record.id.into(),
            key: SigningKey::from_bytes(&record.secret_key),
        });
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Arc::clone(&key), Instant::now()));
        Ok(key)
    }

    /// Makes sure a key exists (on first start) and returns its id.
    pub async fn ensure(&self) -> Result<String, ServiceError> {
        Ok(self.key().await?.id.to_string())
    }

    /// Signs arbitrary canonical bytes (a checkpoint) with the current key.
    pub async fn sign_bytes(&self, bytes: &[u8]) -> Result<(String, [u8; 64]), ServiceError> {
        let key = self.key().await?;
        Ok((key.id.to_string(), key.key.sign(bytes).to_bytes()))
    }

    /// Signs events of `app`.
    pub async fn sign(
        &self,
        app: ApplicationId,
        records: Vec<EventRecord>,
    ) -> Result<Vec<SignedEvent>, ServiceError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.key().await?;
        Ok(records
            .into_iter()
            .map(|record| {
                let signature = key.key.sign(&event_payload_bytes(app, &record)).to_bytes();
                SignedEvent {
                    application_id: app,
                    record,
                    key_id: Arc::clone(&key.id),
                    signature,
                }
            })
            .collect())
    }
}
