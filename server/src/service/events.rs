//! The event stream of an application: backlog, then live, with no gap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::FutureExt as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::feed::Feeds;
use super::signer::EventSigner;
use super::{Caller, KeyCache, Refused, RefusedExt, ServiceError, SignedEvent, reason};
use crate::domain::{ApiKeyId, Clock};
use crate::metrics::{FlowStep, Metrics};
use crate::notify::Notifier;
use crate::store::{Interest, Store};

/// Events read per query.
const PAGE: i64 = 256;
/// Re-read even without a wake-up this often, as a safety net (e.g. a
/// notification from another replica that never arrived).
const POLL: std::time::Duration = std::time::Duration::from_secs(1);
/// How often a stream checks that its API key was not revoked.
pub const KEY_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

/// Streams an application's events.
pub struct EventService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    keys: Arc<KeyCache>,
    signer: Arc<EventSigner>,
    notifier: Arc<Notifier>,
    metrics: Arc<Metrics>,
    /// Open event streams allowed per API key (per replica).
    max_subscribers_per_key: usize,
    /// Open streams per API key.
    open: Arc<Mutex<HashMap<ApiKeyId, usize>>>,
    /// One shared reader per application with subscribers.
    feeds: Feeds,
}

/// One open event stream of a key; counted until dropped.
#[derive(Debug)]
pub struct StreamSlot {
    open: Arc<Mutex<HashMap<ApiKeyId, usize>>>,
    key: ApiKeyId,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

impl EventService {
    /// The event streams of `store`, signed by `signer`, woken by `notifier`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        keys: Arc<KeyCache>,
        signer: Arc<EventSigner>,
        notifier: Arc<Notifier>,
        metrics: Arc<Metrics>,
        max_subscribers_per_key: usize,
    ) -> Self {
        Self {
            feeds: Feeds::new(Arc::clone(&store), Arc::clone(&signer)),
            store,
            clock,
            keys,
            signer,
            notifier,
            metrics,
            max_subscribers_per_key,
            open: Arc::default(),
        }
    }

    /// Admits one more event stream of the caller's key, or refuses it past
    /// the per-key limit.
    pub fn admit(&self, caller: &Caller) -> Result<StreamSlot, ServiceError> {
        let limit = self.max_subscribers_per_key;
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(caller.key_id).or_default();
        if *count >= limit {
            return Err(ServiceError::ResourceExhausted(
                Refused::new(
                    reason::TOO_MANY_SUBSCRIBERS,
                    format!(
                        "this API key already has {limit} open event streams on this server; \
                         close one or share a stream"
                    ),
                )
                .with("limit", limit),
            ));
        }
        *count += 1;
        Ok(StreamSlot {
            open: Arc::clone(&self.open),
            key: caller.key_id,
        })
    }

    /// Whether the caller's key has been revoked (or its application is
    /// gone); shared with every other call of the key through the key cache.
    async fn is_key_revoked(&self, caller: &Caller) -> Result<bool, ServiceError> {
        let key = self.keys.api_key(caller.key_id).await?;
        Ok(key.is_none_or(|key| key.application.id != caller.application.id))
    }

    /// Where a subscription starts: cursor 0 means "everything retained",
    /// `from_head` "only what commits from now on"; a resume cursor older
    /// than what retention kept is refused, because events after it are
    /// gone, and so is one beyond the newest event, which this log never
    /// handed out.
    pub async fn start_cursor(
        &self,
        caller: &Caller,
        after: i64,
        from_head: bool,
    ) -> Result<i64, ServiceError> {
        let store = &self.store;
        if from_head {
            if after != 0 {
                return Err(crate::domain::InputError::new(
                    "after_cursor",
                    "must be 0 when from_head is set",
                )
                .into());
            }
            return Ok(store.event_head(caller.application.id).await?.start);
        }
        if after == 0 {
            return Ok(0);
        }
        let purged = store.purged_through().await?;
        if after < purged {
            return Err(ServiceError::OutOfRange(format!(
                "events up to cursor {purged} were removed by retention; resume from {purged} \
                 (some events were missed) or re-read state with GetTransaction"
            )));
        }
        let newest = store.event_head(caller.application.id).await?.newest;
        if after > newest.max(purged) {
            return Err(ServiceError::OutOfRange(format!(
                "cursor {after} is beyond this application's newest event ({}); resume from a \
                 cursor this stream delivered, or subscribe from the head",
                newest.max(purged)
            )));
        }
        Ok(after)
    }

    /// The server's event-signing keys, newest first (made on first use).
    pub async fn server_keys(&self) -> Result<Vec<crate::store::ServerKeyRecord>, ServiceError> {
        self.signer.ensure().await?;
        Ok(self.store.server_keys().await?)
    }

    /// Sends the caller's events after `after` into `sink` until the receiver
    /// goes away or `stop` fires. Errors are sent, then the pump ends; so
    /// does the pump of a key that is revoked (checked every
    /// `KEY_CHECK`, `UNAUTHENTICATED`). When the server drains (`stop`), the
    /// stream ends `UNAVAILABLE`: resume from the last cursor elsewhere.
    pub async fn pump_events(
        &self,
        caller: Caller,
        mut after: i64,
        sink: mpsc::Sender<Result<SignedEvent, ServiceError>>,
        stop: CancellationToken,
        reset: CancellationToken,
    ) {
        let app = caller.application.id;
        let feed = self.feeds.of(app);
        // Wake-ups from other replicas come here while this stream lasts.
        let _listening = self
            .notifier
            .listen_application(app, Interest::Events)
            .await;
        let mut wake = self.notifier.watch_events(app);
        let mut key_check = tokio::time::interval(KEY_CHECK);
        key_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Marked seen before reading: a notification during the read is kept.
            let version = *wake.borrow_and_update();
            let read = feed.after(after, PAGE, version, POLL);
            let batch = match read.await {
                Ok(batch) => batch,
                Err(error) => {
                    let _ = sink.send(Err(error)).await;
                    return;
                }
            };
            let full = i64::try_from(batch.len()).unwrap_or(i64::MAX) >= PAGE;
            for event in batch {
                after = event.record.cursor;
                let late = (self.clock.now() - event.record.occurred_at).to_std();
                self.metrics
                    .flow_step(FlowStep::Delivered, late.unwrap_or_default());
                if !self
                    .send_or_reset(&caller, &sink, &mut key_check, &reset, event)
                    .await
                {
                    return;
                }
            }
            if full {
                // A long backlog is read page after page without waiting:
                // the key is checked between pages too (at most every
                // KEY_CHECK), so a revoked key's stream ends within the
                // second however much is left to read.
                if key_check.tick().now_or_never().is_some()
                    && self.ended_by_key_check(&caller, &sink).await
                {
                    return;
                }
                continue;
            }
            // One poll deadline for the whole wait: the key check below
            // wakes this loop more often than POLL, and a sleep made anew
            // each time round would never end (then only a wake-up, which
            // may be lost, would bring the next read).
            let poll = tokio::time::sleep(POLL);
            tokio::pin!(poll);
            loop {
                tokio::select! {
                    _ = wake.changed() => break,
                    () = &mut poll => break,
                    () = sink.closed() => return,
                    () = stop.cancelled() => {
                        let draining = ServiceError::TryAgain(
                            "the server is shutting down; subscribe again (another replica) \
                             from the last cursor you processed"
                                .to_owned(),
                        );
                        // A peer that stopped reading does not hold the drain up.
                        let _ = tokio::time::timeout(
                            std::time::Duration::from_secs(1),
                            sink.send(Err(draining)),
                        )
                        .await;
                        return;
                    }
                    _ = key_check.tick() => if self.ended_by_key_check(&caller, &sink).await {
                        return;
                    },
                }
            }
        }
    }

    /// Checks the stream's key; once it is revoked (or cannot be read), says
    /// so on the stream and returns true: the pump ends.
    async fn ended_by_key_check(
        &self,
        caller: &Caller,
        sink: &mpsc::Sender<Result<SignedEvent, ServiceError>>,
    ) -> bool {
        let error = match self.is_key_revoked(caller).await {
            Ok(false) => return false,
            Ok(true) => {
                ServiceError::Unauthenticated("the API key of this stream was revoked".to_owned())
            }
            Err(error) => error,
        };
        let _ = sink.send(Err(error)).await;
        true
    }

    /// Sends `event` once the peer has room for it. A peer that does not
    /// read cannot be told its key was revoked, so while it holds the send
    /// up the key is still checked every `KEY_CHECK`, and a revoked key's
    /// stream is reset (`reset`); false once the stream has ended.
    async fn send_or_reset(
        &self,
        caller: &Caller,
        sink: &mpsc::Sender<Result<SignedEvent, ServiceError>>,
        key_check: &mut tokio::time::Interval,
        reset: &CancellationToken,
        event: SignedEvent,
    ) -> bool {
        loop {
            tokio::select! {
                biased;
                permit = sink.reserve() => {
                    let Ok(permit) = permit else { return false };
                    permit.send(Ok(event));
                    return true;
                }
                _ = key_check.tick() => {
                    // A failed read is decided once the peer reads again.
                    if let Ok(true) = self.is_key_revoked(caller).await {
                        tracing::info!("resetting the stream of a revoked key that does not read");
                        reset.cancel();
                        return false;
                    }
                }
            }
        }
    }
}
