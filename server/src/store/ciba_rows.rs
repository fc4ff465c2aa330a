//! The rows of the CIBA tables as the engines read them, and their
//! conversion into the store's types (`ciba.rs`).

use super::ciba::{CibaClient, CibaRequest, OidcKeyRecord};
use super::codec::StoredTime;
use super::{StoreError, StoreResult};
use crate::domain::ciba::{DeliveryMode, IdTokenAlg};
use crate::domain::{ApplicationId, TransactionId};

#[derive(sqlx::FromRow)]
pub(super) struct ClientRow {
    application_id: ApplicationId,
    delivery_mode: String,
    notification_endpoint: Option<String>,
    id_token_alg: String,
}

impl TryFrom<ClientRow> for CibaClient {
    type Error = StoreError;
    fn try_from(row: ClientRow) -> StoreResult<Self> {
        Ok(Self {
            mode: DeliveryMode::parse(&row.delivery_mode)
                .ok_or_else(|| StoreError::Corrupt(format!("ciba mode {}", row.delivery_mode)))?,
            id_token_alg: IdTokenAlg::parse(&row.id_token_alg)
                .ok_or_else(|| StoreError::Corrupt(format!("ciba alg {}", row.id_token_alg)))?,
            application_id: row.application_id,
            notification_endpoint: row.notification_endpoint,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct RequestRow {
    id_hash: Vec<u8>,
    application_id: ApplicationId,
    transaction_id: TransactionId,
    notification_token: Option<String>,
    interval_seconds: i64,
    created_at: StoredTime,
    last_poll_at: Option<StoredTime>,
    redeemed_at: Option<StoredTime>,
    notified_at: Option<StoredTime>,
    notify_attempts: i64,
}

#[derive(sqlx::FromRow)]
pub(super) struct NotifyRow {
    #[sqlx(flatten)]
    pub(super) request: RequestRow,
    pub(super) notify_auth_req_id: Option<String>,
}

impl From<RequestRow> for CibaRequest {
    fn from(row: RequestRow) -> Self {
        Self {
            id_hash: row.id_hash,
            application_id: row.application_id,
            transaction_id: row.transaction_id,
            notification_token: row.notification_token,
            interval_seconds: row.interval_seconds,
            created_at: row.created_at.0,
            last_poll_at: row.last_poll_at.map(|t| t.0),
            redeemed_at: row.redeemed_at.map(|t| t.0),
            notified_at: row.notified_at.map(|t| t.0),
            notify_attempts: row.notify_attempts,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct KeyRow {
    alg: String,
    kid: String,
    private_der: Vec<u8>,
    created_at: StoredTime,
}

impl TryFrom<KeyRow> for OidcKeyRecord {
    type Error = StoreError;
    fn try_from(row: KeyRow) -> StoreResult<Self> {
        Ok(Self {
            alg: IdTokenAlg::parse(&row.alg)
                .ok_or_else(|| StoreError::Corrupt(format!("oidc key alg {}", row.alg)))?,
            kid: row.kid,
            private_der: row.private_der,
            created_at: row.created_at.0,
        })
    }
}
