//! How often a replica publishes to the others: at once while it keeps
//! up, at most every [`PUBLISH_GAP`] once it has fallen behind.

use std::time::Duration;

use tokio::time::Instant;

use crate::domain::Notice;

/// How long a publisher that has fallen behind waits from one publish to
/// the next, gathering what arrives meanwhile (see [`Pacing`]).
pub(super) const PUBLISH_GAP: Duration = Duration::from_millis(10);
/// Notices found waiting at one publish that mean the publisher has fallen
/// behind its replica's traffic (one login's changes bring at most three
/// at a time).
pub(super) const PUBLISH_BEHIND: usize = 8;

/// What waits to be published, and when the next publish may go.
///
/// A publisher whose replica is quiet sends each notice at once (and
/// what arrives while a publish is under way with the next one). One that
/// finds [`PUBLISH_BEHIND`] or more waiting has fallen behind — the
/// database is busy — and from then on publishes at most every
/// [`PUBLISH_GAP`] until a publish finds fewer: every `NOTIFY` is a
/// commit that takes PostgreSQL's one notification-queue lock and wakes
/// every listening connection of the database, so under load fewer,
/// larger publishes leave the database to the logins. Measured with three
/// replicas on two cores (`bench/scripts/replicas.sh`): at 64 concurrent
/// logins the publishers' and listeners' database CPU fell from 2.9 s to
/// 1.0 s in a run and logins rose from 1 866 to 2 136 a second; at 1 and 8
/// no publish waits and nothing changed.
pub(super) struct Pacing {
    /// Notices waiting for the next publish.
    pub(super) pending: Vec<Notice>,
    /// When the next publish may go.
    pub(super) next: Instant,
}

impl Default for Pacing {
    fn default() -> Self {
        Self {
            pending: Vec::new(),
            next: Instant::now(),
        }
    }
}

impl Pacing {
    /// A publish of `waiting` notices starts now: the next goes at once,
    /// or [`PUBLISH_GAP`] from now if this one found the publisher behind.
    pub(super) fn publishing(&mut self, waiting: usize) {
        let now = Instant::now();
        self.next = if waiting >= PUBLISH_BEHIND {
            now + PUBLISH_GAP
        } else {
            now
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ApplicationId;

    #[test]
    fn a_publisher_waits_only_once_it_has_fallen_behind() {
        let mut pacing = Pacing::default();
        pacing.publishing(1);
        assert!(
            pacing.next <= Instant::now(),
            "a quiet replica publishes at once"
        );
        pacing.publishing(PUBLISH_BEHIND - 1);
        assert!(pacing.next <= Instant::now());
        let before = Instant::now();
        pacing.publishing(PUBLISH_BEHIND);
        assert!(pacing.next >= before + PUBLISH_GAP, "a busy one waits");
        pacing.pending.push(Notice::EventsAppended {
            application_id: ApplicationId::random(),
        });
        pacing.publishing(pacing.pending.len());
        assert!(
            pacing.next <= Instant::now(),
            "and publishes at once again when it keeps up"
        );
    }
}
