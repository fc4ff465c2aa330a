//! One event reader per application per replica, shared by all its
//! subscribers: when a wake-up reaches every subscriber of an application,
//! one of them reads the database and the others take the same events from
//! memory. A subscriber behind what the feed holds (a backlog) reads for
//! itself until it catches up.
//!
//! The feed holds a contiguous run of events: every event with a position in
//! `(from, through]`, in order, because each read returns everything
//! committed before it (see `EventStore::events_after`). So serving a
//! subscriber from it loses and reorders nothing.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::signer::EventSigner;
use super::{ServiceError, SignedEvent};
use crate::domain::ApplicationId;
use crate::store::Store;

/// Events a feed keeps at most; older ones are dropped from its front.
const KEPT: usize = 4096;

/// What one application's subscribers share.
pub struct Feed {
    app: ApplicationId,
    store: Arc<dyn Store>,
    signer: Arc<EventSigner>,
    state: Mutex<FeedState>,
}

#[derive(Debug, Default)]
struct FeedState {
    /// Held events are exactly those with a position in `(from, through]`;
    /// `None` until the first shared read.
    range: Option<(i64, i64)>,
    events: VecDeque<Arc<SignedEvent>>,
    /// The wake-up version and the time of the last shared read.
    read_version: u64,
    read_at: Option<Instant>,
}

impl Feed {
    /// Events after `after`, at most `limit`, fresh as of wake-up `version`
    /// (or at most `max_age` old): read from the database by whichever
    /// subscriber asks first, from memory by the others.
    /// They are signed once, when read.
    pub async fn after(
        &self,
        after: i64,
        limit: i64,
        version: u64,
        max_age: Duration,
    ) -> Result<Vec<SignedEvent>, ServiceError> {
        let (app, store) = (self.app, self.store.as_ref());
        let mut state = self.state.lock().await;
        let (from, through) = match state.range {
            Some(range) => range,
            None => {
                state.range = Some((after, after));
                (after, after)
            }
        };
        if after < from {
            // Behind the feed: this subscriber's own backlog.
            drop(state);
            let own = store.events_after(app, after, limit).await?;
            return self.signer.sign(app, own).await;
        }
        let is_stale =
            state.read_version < version || state.read_at.is_none_or(|at| at.elapsed() >= max_age);
        if is_stale {
            let fresh = store.events_after(app, through, limit).await?;
            let fresh = self.signer.sign(app, fresh).await?;
            // A full page may have more behind it: stay stale until a read
            // comes back short.
            if i64::try_from(fresh.len()).unwrap_or(i64::MAX) < limit {
                state.read_version = version;
                state.read_at = Some(Instant::now());
            }
            let mut through = through;
            for event in fresh {
                through = event.record.cursor;
                state.events.push_back(Arc::new(event));
            }
            let mut from = from;
            while state.events.len() > KEPT {
                if let Some(dropped) = state.events.pop_front() {
                    from = dropped.record.cursor;
                }
            }
            state.range = Some((from, through));
        }
        // Held in cursor order: the first one after `after` is found by
        // bisection, not by walking up to 4 096 events on every read (that
        // walk was 5 % of a server's CPU at one login at a time).
        let take = usize::try_from(limit).unwrap_or(usize::MAX);
        let first = state
            .events
            .partition_point(|event| event.record.cursor <= after);
        Ok(state
            .events
            .range(first..)
            .take(take)
            .map(|event| (**event).clone())
            .collect())
    }
}

/// The feeds of this replica, one per application with subscribers.
pub struct Feeds {
    store: Arc<dyn Store>,
    signer: Arc<EventSigner>,
    feeds: std::sync::Mutex<std::collections::HashMap<ApplicationId, std::sync::Weak<Feed>>>,
}

impl Feeds {
    /// No feeds yet; each reads `store` and signs with `signer`.
    pub fn new(store: Arc<dyn Store>, signer: Arc<EventSigner>) -> Self {
        Self {
            store,
            signer,
            feeds: std::sync::Mutex::default(),
        }
    }

    /// The application's feed, shared while any subscriber holds it.
    pub fn of(&self, app: ApplicationId) -> Arc<Feed> {
        let mut feeds = self
            .feeds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(feed) = feeds.get(&app).and_then(std::sync::Weak::upgrade) {
            return feed;
        }
        feeds.retain(|_, feed| feed.strong_count() > 0);
        let feed = Arc::new(Feed {
            app,
            store: Arc::clone(&self.store),
            signer: Arc::clone(&self.signer),
            state: Mutex::default(),
        });
        feeds.insert(app, Arc::downgrade(&feed));
        feed
    }
}
