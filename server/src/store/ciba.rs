//! OpenID CIBA's storage: each application's client settings, the
//! backchannel requests (by the hash of their `auth_req_id`, so any
//! replica answers them) with their last poll, redemption and
//! notification, and the ID-token signing keys (one per algorithm, made
//! once per database). The statements are the same text on both engines
//! (`ciba_sql.rs`), the `ciba` part of the store's
//! [`Queries`](super::queries::Queries).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use super::ciba_rows::{ClientRow, KeyRow, NotifyRow, RequestRow};
use super::codec::{StoredTime, StoredUuid};
use super::engine::{Engine, connection};
use crate::domain::ciba::{DeliveryMode, IdTokenAlg};
use crate::domain::{ApplicationId, TransactionId};

/// An application's settings as a CIBA client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CibaClient {
    /// The application (its id is the `client_id`).
    pub application_id: ApplicationId,
    /// How it gets results.
    pub mode: DeliveryMode,
    /// Where pings and pushes go (ping and push modes).
    pub notification_endpoint: Option<String>,
    /// What signs its ID tokens.
    pub id_token_alg: IdTokenAlg,
}

/// One backchannel authentication request.
#[derive(Clone)]
pub struct CibaRequest {
    /// SHA-256 of its `auth_req_id`.
    pub id_hash: Vec<u8>,
    /// The client.
    pub application_id: ApplicationId,
    /// The push transaction it waits on.
    pub transaction_id: TransactionId,
    /// The client's bearer for pings and pushes.
    pub notification_token: Option<String>,
    /// The least seconds between polls.
    pub interval_seconds: i64,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When the client last polled.
    pub last_poll_at: Option<DateTime<Utc>>,
    /// When its tokens were issued (at most once).
    pub redeemed_at: Option<DateTime<Utc>>,
    /// When the client's endpoint acknowledged the notification.
    pub notified_at: Option<DateTime<Utc>>,
    /// Notification attempts so far.
    pub notify_attempts: i64,
}

impl std::fmt::Debug for CibaRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CibaRequest")
            .field("application_id", &self.application_id)
            .field("transaction_id", &self.transaction_id)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A ping or push notification claimed for delivery: the request and its
/// `auth_req_id`, kept until the client's endpoint acknowledges it.
#[derive(Clone)]
pub struct CibaNotification {
    /// The request.
    pub request: CibaRequest,
    /// Its `auth_req_id` (a secret of the client's).
    pub auth_req_id: String,
}

impl std::fmt::Debug for CibaNotification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CibaNotification")
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

/// What a failed notification attempt leaves.
#[derive(Debug, Clone)]
pub struct NotifyFailure {
    /// When the next attempt may run.
    pub next_attempt_at: DateTime<Utc>,
    /// Why it failed (no secret in it).
    pub error: String,
    /// Whether delivery is given up: the kept `auth_req_id` is cleared.
    pub give_up: bool,
}

/// An ID-token signing key.
#[derive(Clone)]
pub struct OidcKeyRecord {
    /// Its algorithm (one key each).
    pub alg: IdTokenAlg,
    /// Its `kid`.
    pub kid: String,
    /// The private key, DER (PKCS#1 for RSA, PKCS#8 otherwise).
    pub private_der: Vec<u8>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for OidcKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcKeyRecord")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// CIBA clients, requests and ID-token keys.
#[async_trait]
pub trait CibaStore: Send + Sync {
    /// Sets an application's client settings.
    async fn set_ciba_client(&self, client: &CibaClient, now: DateTime<Utc>) -> StoreResult<()>;
    /// An application's client settings, if set.
    async fn ciba_client(&self, app: ApplicationId) -> StoreResult<Option<CibaClient>>;
    /// Stores a new request; a notified client's keeps its `auth_req_id`
    /// (`notify`) until the notification is acknowledged, due at once.
    async fn insert_ciba_request(
        &self,
        request: &CibaRequest,
        notify: Option<&str>,
    ) -> StoreResult<()>;
    /// A request by the hash of its `auth_req_id`.
    async fn ciba_request(&self, id_hash: &[u8]) -> StoreResult<Option<CibaRequest>>;
    /// Records a poll at `now` if the last one was at or before
    /// `allowed_after`; `false` (nothing changed) if it came too soon.
    async fn poll_ciba_request(
        &self,
        id_hash: &[u8],
        now: DateTime<Utc>,
        allowed_after: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Marks a request's tokens issued; `false` if they already were.
    async fn redeem_ciba_request(&self, id_hash: &[u8], now: DateTime<Utc>) -> StoreResult<bool>;
    /// Leases to `owner` until `until` one due notification whose
    /// transaction has ended and which no live lease holds.
    async fn claim_ciba_notification(
        &self,
        owner: uuid::Uuid,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<CibaNotification>>;
    /// Records an acknowledged notification (and clears the kept id);
    /// `false` if `owner` no longer holds its lease.
    async fn ciba_notification_delivered(
        &self,
        id_hash: &[u8],
        owner: uuid::Uuid,
        at: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Records a failed attempt and gives the lease up; `false` if `owner`
    /// no longer held it.
    async fn ciba_notification_failed(
        &self,
        id_hash: &[u8],
        owner: uuid::Uuid,
        failure: &NotifyFailure,
    ) -> StoreResult<bool>;
    /// The key of `alg`, if made.
    async fn oidc_key(&self, alg: IdTokenAlg) -> StoreResult<Option<OidcKeyRecord>>;
    /// Stores `key` unless its algorithm has one (a racing replica's wins).
    async fn add_oidc_key(&self, key: &OidcKeyRecord) -> StoreResult<()>;
    /// Every key.
    async fn oidc_keys(&self) -> StoreResult<Vec<OidcKeyRecord>>;
}

#[async_trait]
impl<E: Engine> CibaStore for E {
    async fn set_ciba_client(&self, client: &CibaClient, now: DateTime<Utc>) -> StoreResult<()> {
        let mut conn = connection::<E>(self.writer()).await?;
        let row = (
            client.application_id,
            client.mode.as_str().to_owned(),
            client.notification_endpoint.clone(),
            client.id_token_alg.as_str().to_owned(),
            StoredTime(now),
        );
        E::queries()
            .ciba
            .upsert_client
            .execute(&mut *conn, row)
            .await
            .map_err(E::error)?;
        Ok(())
    }

    async fn ciba_client(&self, app: ApplicationId) -> StoreResult<Option<CibaClient>> {
        let mut conn = connection::<E>(self.reader()).await?;
        let row: Option<ClientRow> = E::queries()
            .ciba
            .find_client
            .fetch_optional(&mut *conn, (app,))
            .await
            .map_err(E::error)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn insert_ciba_request(
        &self,
        request: &CibaRequest,
        notify: Option<&str>,
    ) -> StoreResult<()> {
        let mut conn = connection::<E>(self.writer()).await?;
        let row = (
            request.id_hash.clone(),
            request.application_id,
            request.transaction_id,
            request.notification_token.clone(),
            request.interval_seconds,
            StoredTime(request.created_at),
            notify.map(str::to_owned),
            notify.map(|_| StoredTime(request.created_at)),
        );
        E::queries()
            .ciba
            .insert_request
            .execute(&mut *conn, row)
            .await
            .map_err(E::error)?;
        Ok(())
    }

    async fn ciba_request(&self, id_hash: &[u8]) -> StoreResult<Option<CibaRequest>> {
        // From the writer: a poll right after the request on another
        // replica must find it.
        let mut conn = connection::<E>(self.writer()).await?;
        let row: Option<RequestRow> = E::queries()
            .ciba
            .find_request
            .fetch_optional(&mut *conn, (id_hash.to_vec(),))
            .await
            .map_err(E::error)?;
        Ok(row.map(Into::into))
    }

    async fn poll_ciba_request(
        &self,
        id_hash: &[u8],
        now: DateTime<Utc>,
        allowed_after: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut conn = connection::<E>(self.writer()).await?;
        let params = (id_hash.to_vec(), StoredTime(now), StoredTime(allowed_after));
        let changed = E::queries()
            .ciba
            .poll_request
            .execute(&mut *conn, params)
            .await
            .map_err(E::error)?;
        Ok(changed == 1)
    }

    async fn redeem_ciba_request(&self, id_hash: &[u8], now: DateTime<Utc>) -> StoreResult<bool> {
        let mut conn = connection::<E>(self.writer()).await?;
        let changed = E::queries()
            .ciba
            .redeem_request
            .execute(&mut *conn, (id_hash.to_vec(), StoredTime(now)))
            .await
            .map_err(E::error)?;
        Ok(changed == 1)
    }

    async fn claim_ciba_notification(
        &self,
        owner: uuid::Uuid,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<CibaNotification>> {
        let mut conn = connection::<E>(self.writer()).await?;
        let row: Option<NotifyRow> = E::queries()
            .ciba
            .claim_notification
            .fetch_optional(
                &mut *conn,
                (StoredUuid(owner), StoredTime(until), StoredTime(now)),
            )
            .await
            .map_err(E::error)?;
        Ok(row.and_then(|row| {
            Some(CibaNotification {
                auth_req_id: row.notify_auth_req_id?,
                request: row.request.into(),
            })
        }))
    }

    async fn ciba_notification_delivered(
        &self,
        id_hash: &[u8],
        owner: uuid::Uuid,
        at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut conn = connection::<E>(self.writer()).await?;
        let changed = E::queries()
            .ciba
            .notification_delivered
            .execute(
                &mut *conn,
                (id_hash.to_vec(), StoredUuid(owner), StoredTime(at)),
            )
            .await
            .map_err(E::error)?;
        Ok(changed == 1)
    }

    async fn ciba_notification_failed(
        &self,
        id_hash: &[u8],
        owner: uuid::Uuid,
        failure: &NotifyFailure,
    ) -> StoreResult<bool> {
        let mut conn = connection::<E>(self.writer()).await?;
        let changed = E::queries()
            .ciba
            .notification_failed
            .execute(
                &mut *conn,
                (
                    id_hash.to_vec(),
                    StoredUuid(owner),
                    StoredTime(failure.next_attempt_at),
                    failure.error.clone(),
                    failure.give_up,
                ),
            )
            .await
            .map_err(E::error)?;
        Ok(changed == 1)
    }

    async fn oidc_key(&self, alg: IdTokenAlg) -> StoreResult<Option<OidcKeyRecord>> {
        let mut conn = connection::<E>(self.writer()).await?;
        let row: Option<KeyRow> = E::queries()
            .ciba
            .find_key
            .fetch_optional(&mut *conn, (alg.as_str().to_owned(),))
            .await
            .map_err(E::error)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn add_oidc_key(&self, key: &OidcKeyRecord) -> StoreResult<()> {
        let mut conn = connection::<E>(self.writer()).await?;
        let row = (
            key.alg.as_str().to_owned(),
            key.kid.clone(),
            key.private_der.clone(),
            StoredTime(key.created_at),
        );
        E::queries()
            .ciba
            .insert_key
            .execute(&mut *conn, row)
            .await
            .map_err(E::error)?;
        Ok(())
    }

    async fn oidc_keys(&self) -> StoreResult<Vec<OidcKeyRecord>> {
        let mut conn = connection::<E>(self.reader()).await?;
        let rows: Vec<KeyRow> = E::queries()
            .ciba
            .keys
            .fetch_all(&mut *conn, ())
            .await
            .map_err(E::error)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }
}
