//! The CIBA provider's ID-token keys and signatures: one key per algorithm
//! ([`IdTokenAlg`]), made on first use and stored in the database (so every
//! replica signs with, and publishes, the same keys), published as a JWKS
//! with a `kid` each. RS256 is always published (OpenID requires it);
//! EdDSA and ES256 keys are made when a client first asks for them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::ServiceError;
use crate::domain::Clock;
use crate::domain::ciba::IdTokenAlg;
use crate::store::{OidcKeyRecord, Store, StoreError};

/// A key ready to sign, with its published form.
struct LoadedKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Jwk,
}

/// Signs ID tokens with the database's keys.
pub struct IdTokenSigner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    loaded: Mutex<BTreeMap<IdTokenAlg, Arc<LoadedKey>>>,
}

impl std::fmt::Debug for IdTokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdTokenSigner").finish_non_exhaustive()
    }
}

fn jose(alg: IdTokenAlg) -> Algorithm {
    match alg {
        IdTokenAlg::Rs256 => Algorithm::RS256,
        IdTokenAlg::EdDsa => Algorithm::EdDSA,
        IdTokenAlg::Es256 => Algorithm::ES256,
    }
}

fn encoding_key(alg: IdTokenAlg, der: &[u8]) -> EncodingKey {
    match alg {
        IdTokenAlg::Rs256 => EncodingKey::from_rsa_der(der),
        IdTokenAlg::EdDsa => EncodingKey::from_ed_der(der),
        IdTokenAlg::Es256 => EncodingKey::from_ec_der(der),
    }
}

/// The PKCS#8 header of an Ed25519 private key (RFC 8410), before the seed.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A fresh private key of `alg`, DER. RSA key generation is slow: it runs
/// on a blocking thread, once per database.
async fn generate(alg: IdTokenAlg) -> Result<Vec<u8>, ServiceError> {
    let internal = |what: String| ServiceError::Internal(StoreError::Corrupt(what));
    match alg {
        IdTokenAlg::Rs256 => tokio::task::spawn_blocking(|| {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048)
                .map_err(|e| format!("RSA key generation failed: {e}"))?;
            key.to_pkcs1_der()
                .map(|der| der.as_bytes().to_vec())
                .map_err(|e| format!("RSA key encoding failed: {e}"))
        })
        .await
        .map_err(|e| internal(format!("RSA key generation stopped: {e}")))?
        .map_err(internal),
        IdTokenAlg::EdDsa => {
            let mut seed = [0u8; 32];
            crate::domain::secure_rng().fill_bytes(&mut seed);
            let mut der = ED25519_PKCS8_PREFIX.to_vec();
            der.extend_from_slice(&seed);
            Ok(der)
        }
        IdTokenAlg::Es256 => {
            use p256::pkcs8::EncodePrivateKey;
            loop {
                let mut bytes = [0u8; 32];
                crate::domain::secure_rng().fill_bytes(&mut bytes);
                // Rejection sampling: a scalar of zero or above the order
                // is drawn again.
                if let Ok(key) = p256::SecretKey::from_slice(&bytes) {
                    return key
                        .to_pkcs8_der()
                        .map(|der| der.as_bytes().to_vec())
                        .map_err(|e| internal(format!("P-256 key encoding failed: {e}")));
                }
            }
        }
    }
}

impl IdTokenSigner {
    /// A signer over the keys of `store`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            loaded: Mutex::new(BTreeMap::new()),
        }
    }

    fn load(record: &OidcKeyRecord) -> Result<Arc<LoadedKey>, ServiceError> {
        let encoding = encoding_key(record.alg, &record.private_der);
        let mut jwk = Jwk::from_encoding_key(&encoding, jose(record.alg)).map_err(|e| {
            ServiceError::Internal(StoreError::Corrupt(format!(
                "ID-token key {}: {e}",
                record.kid
            )))
        })?;
        jwk.common.key_id = Some(record.kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Arc::new(LoadedKey {
            kid: record.kid.clone(),
            encoding,
            jwk,
        }))
    }

    /// The key of `alg`, made and stored on first use (a replica that
    /// raced us wins and its key is read back).
    async fn key(&self, alg: IdTokenAlg) -> Result<Arc<LoadedKey>, ServiceError> {
        if let Some(key) = self
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&alg)
        {
            return Ok(Arc::clone(key));
        }
        let record = match self.store.oidc_key(alg).await? {
            Some(record) => record,
            None => {
                let private_der = generate(alg).await?;
                let kid = {
                    let digest = Sha256::digest(&private_der);
                    format!("{}-{}", alg.as_str(), URL_SAFE_NO_PAD.encode(&digest[..12]))
                };
                let fresh = OidcKeyRecord {
                    alg,
                    kid,
                    private_der,
                    created_at: self.clock.now(),
                };
                self.store.add_oidc_key(&fresh).await?;
                self.store.oidc_key(alg).await?.ok_or_else(|| {
                    ServiceError::TryAgain("the ID-token key is being made".to_owned())
                })?
            }
        };
        let key = Self::load(&record)?;
        self.loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(alg, Arc::clone(&key));
        Ok(key)
    }

    /// Makes sure the RS256 key exists (first start).
    pub async fn ensure(&self) -> Result<(), ServiceError> {
        self.key(IdTokenAlg::Rs256).await.map(|_| ())
    }

    /// The published keys: RS256 always, the others once made.
    pub async fn jwks(&self) -> Result<JwkSet, ServiceError> {
        self.ensure().await?;
        let mut keys = Vec::new();
        for record in self.store.oidc_keys().await? {
            keys.push(self.key(record.alg).await?.jwk.clone());
        }
        Ok(JwkSet { keys })
    }

    /// Signs `claims` with the key of `alg`.
    pub async fn sign(
        &self,
        alg: IdTokenAlg,
        claims: &serde_json::Value,
    ) -> Result<String, ServiceError> {
        let key = self.key(alg).await?;
        let mut header = Header::new(jose(alg));
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding).map_err(|e| {
            ServiceError::Internal(StoreError::Corrupt(format!("ID-token signing failed: {e}")))
        })
    }
}
