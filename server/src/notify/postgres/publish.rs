//! Publishing to the other replicas, routed: each notice goes, in one
//! statement per batch, only to the replicas that need it — a device's
//! notices to the replicas holding its streams (`presence`), a user's to
//! those holding a stream of one of the user's devices, an application's
//! wake-ups and outcomes to those holding its waiters or subscribers
//! (`listeners`: wake-ups to those with subscribers, settled transactions to
//! those with waiters) — each on the replica's own channel. A replica that
//! needs none of a batch is not woken by it.

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::Notice;
use crate::domain::transaction::Audience;
use crate::store::Interest;

/// `NOTIFY` payloads must stay under 8000 bytes: a chunk's notices, with
/// the envelope, stay under this.
pub(super) const MAX_PAYLOAD: usize = 7000;
/// The envelope's share of a payload (`{"origin":"…","items":[…]}`).
const ENVELOPE: usize = 64;

/// One published batch, as a replica receives it.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Batch {
    /// The publishing replica.
    pub origin: Uuid,
    /// What happened.
    pub items: Vec<Notice>,
}

/// The channel replica `replica` listens on.
pub(super) fn channel_of(replica: Uuid) -> String {
    format!("assent_r_{}", replica.simple())
}

/// Whom a notice concerns, as the routing statement's columns: the
/// application's listeners of one kind, a user's devices, or one device.
#[derive(Debug, Default, PartialEq, Eq)]
struct Route {
    application: Option<Uuid>,
    listeners: Option<&'static str>,
    user: Option<String>,
    device: Option<Uuid>,
}

fn route_of(notice: &Notice) -> Route {
    match notice {
        Notice::EventsAppended { application_id } => Route {
            application: Some(application_id.as_uuid()),
            listeners: Some(Interest::Events.as_str()),
            ..Route::default()
        },
        Notice::Settled { application_id, .. } => Route {
            application: Some(application_id.as_uuid()),
            listeners: Some(Interest::Outcomes.as_str()),
            ..Route::default()
        },
        Notice::Confirm {
            application_id,
            user_id,
            ..
        }
        | Notice::Withdraw {
            audience:
                Audience::User {
                    application_id,
                    user_id,
                    ..
                },
            ..
        } => Route {
            application: Some(application_id.as_uuid()),
            user: Some(user_id.as_str().to_owned()),
            ..Route::default()
        },
        Notice::Withdraw {
            audience: Audience::Device { device_id },
            ..
        }
        | Notice::Revoked { device_id }
        | Notice::StreamOpened { device_id, .. } => Route {
            device: Some(device_id.as_uuid()),
            ..Route::default()
        },
    }
}

/// The statement's arrays: a chunk number per notice (a replica gets one
/// payload per chunk it needs anything of, each under [`MAX_PAYLOAD`]),
/// whom it concerns and its JSON.
#[derive(Debug, Default)]
pub(super) struct Columns {
    chunk: Vec<i32>,
    application: Vec<Option<Uuid>>,
    listeners: Vec<Option<&'static str>>,
    user: Vec<Option<String>>,
    device: Vec<Option<Uuid>>,
    item: Vec<String>,
}

impl Columns {
    pub(super) fn of(items: &[Notice]) -> Self {
        let mut columns = Self::default();
        let mut chunk = 0;
        let mut size = ENVELOPE;
        for notice in items {
            let Ok(item) = serde_json::to_string(notice) else {
                continue;
            };
            if size + item.len() + 1 > MAX_PAYLOAD && size > ENVELOPE {
                chunk += 1;
                size = ENVELOPE;
            }
            size += item.len() + 1;
            let route = route_of(notice);
            columns.chunk.push(chunk);
            columns.application.push(route.application);
            columns.listeners.push(route.listeners);
            columns.user.push(route.user);
            columns.device.push(route.device);
            columns.item.push(item);
        }
        columns
    }

    /// The payloads of each chunk as a replica that needs all of it gets
    /// them (what the statement builds, for the tests).
    #[cfg(test)]
    pub(super) fn payloads(&self, origin: Uuid) -> Vec<String> {
        let mut out: Vec<Vec<&str>> = Vec::new();
        for (chunk, item) in self.chunk.iter().zip(&self.item) {
            let chunk = usize::try_from(*chunk).unwrap_or_default();
            if out.len() <= chunk {
                out.resize_with(chunk + 1, Vec::new);
            }
            out[chunk].push(item);
        }
        out.into_iter()
            .map(|items| format!(r#"{{"origin":"{origin}","items":[{}]}}"#, items.join(",")))
            .collect()
    }
}

/// Finds, for each notice, the replicas other than `$1` that need it, and
/// notifies each once per chunk with what it needs, in order.
const ROUTED_NOTIFY: &str = r#"
WITH n AS (
    SELECT * FROM unnest($2::int4[], $3::uuid[], $4::text[], $5::text[], $6::uuid[],
        $7::text[]) WITH ORDINALITY AS n (chunk, app, kind, usr, dev, item, ord)
), t AS (
    SELECT n.ord, p.replica FROM n JOIN presence p ON p.device_id = n.dev
    UNION
    SELECT n.ord, p.replica FROM n
        JOIN devices d ON d.application_id = n.app AND d.user_id = n.usr
        JOIN presence p ON p.device_id = d.id
    UNION
    SELECT n.ord, l.replica FROM n
        JOIN listeners l ON l.application_id = n.app AND l.kind = n.kind
)
SELECT pg_notify('assent_r_' || replace(t.replica::text, '-', ''),
    '{"origin":"' || $1::text || '","items":[' || string_agg(n.item, ',' ORDER BY n.ord) || ']}')
FROM t JOIN n ON n.ord = t.ord
WHERE t.replica <> $1
GROUP BY t.replica, n.chunk
"#;

/// Says hello to the running replicas on the channel every version listens
/// to: an empty batch from `origin`.
pub(super) async fn hello(pool: &PgPool, origin: Uuid) {
    let hello = serde_json::to_string(&Batch {
        origin,
        items: Vec::new(),
    })
    .unwrap_or_default();
    let sent = sqlx::query("SELECT pg_notify($1, $2)")
        .bind(super::LEGACY_CHANNEL)
        .bind(hello)
        .execute(pool)
        .await;
    if let Err(error) = sent {
        tracing::warn!(%error, "cannot say hello to the other replicas");
    }
}

/// Sends `items` to the replicas that need them; how many payloads went.
pub(super) async fn publish(pool: &PgPool, origin: Uuid, items: &[Notice]) -> u64 {
    let columns = Columns::of(items);
    if columns.item.is_empty() {
        return 0;
    }
    let sent = sqlx::query(ROUTED_NOTIFY)
        .bind(origin)
        .bind(&columns.chunk)
        .bind(&columns.application)
        .bind(&columns.listeners)
        .bind(&columns.user)
        .bind(&columns.device)
        .bind(&columns.item)
        .fetch_all(pool)
        .await;
    match sent {
        Ok(rows) => u64::try_from(rows.len()).unwrap_or(u64::MAX),
        Err(error) => {
            tracing::warn!(%error, "cannot notify other replicas");
            0
        }
    }
}
