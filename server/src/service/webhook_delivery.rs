//! The webhook delivery worker of a replica: claims due endpoints with a
//! lease (one replica delivers to an endpoint at a time; another takes over
//! when the lease ends), posts each event after the endpoint's stored
//! position in cursor order, advances the position only after a 2xx, and
//! on a failure backs off (1 s doubling to 1 h, jittered) or, after a day
//! of failures, pauses the endpoint with the reason. Every attempt goes to
//! the endpoint's bounded log. Nothing is kept in memory between attempts:
//! the database row is the position.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use rand::Rng as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::signer::{EventSigner, SignedEvent};
use super::webhook_client::{PostOutcome, post};
use crate::domain::Clock;
use crate::domain::webhook::{
    LOG_KEPT, delivery_id, has_failed_too_long, retry_delay, signature_header,
};
use crate::store::{DeliveryAttempt, FailedAttempt, Store, StoreResult, WebhookRecord};

/// Events read per query.
const PAGE: i64 = 64;

/// How deliveries run on this replica.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Whether destinations may resolve to private and other non-global
    /// addresses.
    pub allow_private: bool,
    /// Endpoints delivered to at once by this replica.
    pub concurrency: usize,
    /// How long one POST may take.
    pub request_timeout: Duration,
    /// How long a claimed endpoint stays this replica's without renewal.
    pub lease: Duration,
    /// How often due endpoints are looked for.
    pub poll: Duration,
}

/// Delivers every application's events to its webhook endpoints.
pub struct WebhookDelivery {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    signer: Arc<EventSigner>,
    settings: WebhookSettings,
    /// The lease owner this replica writes.
    owner: Uuid,
}

impl WebhookDelivery {
    /// A worker reading `store`, signing with `signer`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        signer: Arc<EventSigner>,
        settings: WebhookSettings,
    ) -> Self {
        Self {
            store,
            clock,
            signer,
            settings,
            owner: Uuid::new_v4(),
        }
    }

    /// Claims and delivers until `stop`; leases held then are given up, so
    /// another replica takes over at once.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut deliveries = JoinSet::new();
        loop {
            while deliveries.len() < self.settings.concurrency.max(1) {
                let now = self.clock.now();
                let until = now + lease_delta(self.settings.lease);
                match self.store.claim_webhook(self.owner, until, now).await {
                    Ok(Some(endpoint)) => {
                        let worker = Arc::clone(&self);
                        let stop = stop.clone();
                        deliveries.spawn(async move { worker.deliver(endpoint, stop).await });
                    }
                    Ok(None) => break,
                    Err(error) => {
                        tracing::warn!(error = %error, "claiming a webhook endpoint failed");
                        break;
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(self.settings.poll) => {}
                Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
            }
        }
        while deliveries.join_next().await.is_some() {}
    }

    /// Delivers the endpoint's events until none is left, one fails, the
    /// lease is lost or `stop` fires.
    #[tracing::instrument(skip_all, fields(webhook_id = %endpoint.id))]
    async fn deliver(&self, mut endpoint: WebhookRecord, stop: CancellationToken) {
        let outcome = tokio::select! {
            result = self.deliver_pending(&mut endpoint) => result,
            () = stop.cancelled() => Ok(Ended::Released),
        };
        let release = match outcome {
            Ok(Ended::Released) => true,
            Ok(Ended::Done) => false,
            Err(error) => {
                tracing::warn!(error = %error, "webhook delivery interrupted by storage");
                true
            }
        };
        if release && let Err(error) = self.store.release_webhook(endpoint.id, self.owner).await {
            tracing::warn!(error = %error, "giving a webhook lease up failed");
        }
    }

    async fn deliver_pending(&self, endpoint: &mut WebhookRecord) -> StoreResult<Ended> {
        let app = endpoint.application_id;
        loop {
            let records = self
                .store
                .events_after(app, endpoint.delivered_through, PAGE)
                .await?;
            if records.is_empty() {
                return Ok(Ended::Released);
            }
            let events = match self.signer.sign(app, records).await {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(error = %error, "signing events for a webhook failed");
                    return Ok(Ended::Released);
                }
            };
            for event in events {
                let now = self.clock.now();
                let until = now + lease_delta(self.settings.lease);
                if !self
                    .store
                    .renew_webhook_lease(endpoint.id, self.owner, until)
                    .await?
                {
                    // Another replica has it now (or it was paused).
                    return Ok(Ended::Done);
                }
                let cursor = event.record.cursor;
                match self.attempt(endpoint, &event).await? {
                    true => {
                        if !self
                            .store
                            .webhook_delivered(endpoint.id, self.owner, cursor)
                            .await?
                        {
                            return Ok(Ended::Done);
                        }
                        endpoint.delivered_through = cursor;
                        endpoint.failures = 0;
                        endpoint.failing_since = None;
                    }
                    false => return Ok(Ended::Done),
                }
            }
        }
    }

    /// Posts one event; `true` after a 2xx. A failure is recorded (back-off
    /// or pause) and gives the lease up.
    async fn attempt(&self, endpoint: &WebhookRecord, event: &SignedEvent) -> StoreResult<bool> {
        let now = self.clock.now();
        let id = delivery_id(endpoint.application_id, event.record.cursor);
        let body = Bytes::from(payload(event, now).to_string());
        let previous = endpoint
            .previous_secret
            .as_ref()
            .filter(|(_, until)| *until > now)
            .map(|(secret, _)| secret);
        let headers = [
            (
                "webhook-signature",
                signature_header(&endpoint.secret, previous, &id, now.timestamp(), &body),
            ),
            ("webhook-id", id.clone()),
            ("webhook-timestamp", now.timestamp().to_string()),
        ];
        let started = Instant::now();
        let outcome = post(
            &endpoint.url,
            self.settings.allow_private,
            &headers,
            body,
            self.settings.request_timeout,
        )
        .await;
        let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let (status, error, delivered) = match outcome {
            PostOutcome::Answered(status) if (200..300).contains(&status) => {
                (Some(i64::from(status)), None, true)
            }
            PostOutcome::Answered(status) => (
                Some(i64::from(status)),
                Some(format!("HTTP {status}")),
                false,
            ),
            PostOutcome::Failed(why) => (None, Some(why), false),
        };
        let attempt = DeliveryAttempt {
            attempted_at: now,
            event_id: id,
            status,
            error: error.clone(),
            latency_ms,
        };
        self.store
            .log_webhook_attempt(endpoint.id, &attempt, LOG_KEPT)
            .await?;
        if delivered {
            return Ok(true);
        }
        let failures = u32::try_from(endpoint.failures.saturating_add(1)).unwrap_or(u32::MAX);
        let jitter: f64 = rand::rng().random();
        let at = self.clock.now();
        let since = endpoint.failing_since.unwrap_or(at);
        let pause = has_failed_too_long(since, at).then(|| {
            format!(
                "failing since {}: {}",
                since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                error.unwrap_or_default()
            )
        });
        let failed = FailedAttempt {
            next_attempt_at: at + retry_delay(failures, jitter),
            at,
            pause,
        };
        tracing::info!(
            failures,
            cursor = event.record.cursor,
            status = attempt.status,
            "webhook delivery failed"
        );
        self.store
            .webhook_failed(endpoint.id, self.owner, &failed)
            .await?;
        Ok(false)
    }
}

/// How a delivery run ended.
enum Ended {
    /// The lease is still ours and must be given up.
    Released,
    /// The lease is gone already (given up by a failure, or taken).
    Done,
}

fn lease_delta(lease: Duration) -> chrono::Duration {
    chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(10))
}

/// The JSON body of one event (Standard Webhooks' `type`, `timestamp`,
/// `data`), `data` carrying the event as the relying-party API describes it
/// and the server's Ed25519 signature over its canonical bytes.
pub fn payload(event: &SignedEvent, now: DateTime<Utc>) -> serde_json::Value {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    let record = &event.record;
    let time = |at: DateTime<Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    serde_json::json!({
        "type": record.event_type.as_str(),
        "timestamp": time(now),
        "data": {
            "application_id": event.application_id.to_string(),
            "cursor": record.cursor,
            "type": record.event_type.as_str(),
            "state": record.event_type.state().map(|s| s.as_str()),
            "transaction_id": record.transaction_id.map(|t| t.to_string()),
            "user_id": record.user_id.as_ref().map(|u| u.as_str()),
            "device_id": record.device_id.map(|d| d.to_string()),
            "reason": record.reason.map(|r| r.as_str()),
            "fraud_reported": record.fraud_reported,
            "occurred_at": time(record.occurred_at),
            "binding": record.binding.as_ref().map(|b| STANDARD.encode(b)),
            "key_id": event.key_id.as_ref(),
            "signature": STANDARD.encode(event.signature),
        },
    })
}
