//! The event stream of an application: backlog, then live, with no gap.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Deps, ServiceError};
use crate::domain::ApplicationId;
use crate::store::EventRecord;

/// Events read per query.
const PAGE: i64 = 256;
/// Re-read even without a wake-up this often, as a safety net (e.g. a
/// notification from another replica that never arrived).
const POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Streams an application's events.
pub struct EventService {
    deps: Arc<Deps>,
}

impl EventService {
    /// The use case over shared dependencies.
    pub fn new(deps: Arc<Deps>) -> Self {
        Self { deps }
    }

    /// Where a subscription starts: cursor 0 means "everything retained";
    /// a resume cursor older than what retention kept is refused, because
    /// events after it are gone.
    pub async fn start_cursor(&self, after: i64) -> Result<i64, ServiceError> {
        if after == 0 {
            return Ok(0);
        }
        let purged = self.deps.store.purged_through().await?;
        if after < purged {
            return Err(ServiceError::OutOfRange(format!(
                "events up to cursor {purged} were removed by retention; resume from {purged} \
                 (some events were missed) or re-read state with GetTransaction"
            )));
        }
        Ok(after)
    }

    /// Sends `app`'s events after `after` into `sink` until the receiver
    /// goes away or `stop` fires. Errors are sent, then the pump ends.
    pub async fn pump_events(
        &self,
        app: ApplicationId,
        mut after: i64,
        sink: mpsc::Sender<Result<EventRecord, ServiceError>>,
        stop: CancellationToken,
    ) {
        let mut wake = self.deps.notifier.watch_events(app);
        loop {
            // Marked seen before reading: a notification during the read is kept.
            wake.borrow_and_update();
            let batch = match self.deps.store.events_after(app, after, PAGE).await {
                Ok(batch) => batch,
                Err(error) => {
                    let _ = sink.send(Err(error.into())).await;
                    return;
                }
            };
            let full = i64::try_from(batch.len()).unwrap_or(i64::MAX) >= PAGE;
            for event in batch {
                after = event.cursor;
                if sink.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = wake.changed() => {}
                () = tokio::time::sleep(POLL) => {}
                () = sink.closed() => return,
                () = stop.cancelled() => return,
            }
        }
    }
}
