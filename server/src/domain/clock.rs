//! The clock as an input: services read the time from a [`Clock`], so tests
//! move it forward instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

/// Where the services read the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    /// Truncated to the microseconds both engines store, so a record
    /// returned at once equals the record read back later.
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }
}

/// A clock disciplined to the database's: a base clock plus the offset last
/// measured against the database, so every replica decides expiry by the
/// same clock however far its own is off. [`DatabaseClock::measured`]
/// records a measurement; until the first, the base clock is used.
#[derive(Debug)]
pub struct DatabaseClock<C> {
    base: C,
    offset_micros: AtomicI64,
}

impl<C: Clock> DatabaseClock<C> {
    /// Starts with no offset.
    pub fn new(base: C) -> Self {
        Self {
            base,
            offset_micros: AtomicI64::new(0),
        }
    }

    /// The base clock's reading now (to bracket a measurement).
    pub fn base_now(&self) -> DateTime<Utc> {
        self.base.now()
    }

    /// Records a measurement: the database said `database` between the
    /// base readings `before` and `after`. Returns the new offset.
    pub fn measured(
        &self,
        before: DateTime<Utc>,
        database: DateTime<Utc>,
        after: DateTime<Utc>,
    ) -> TimeDelta {
        let midpoint = before + (after - before) / 2;
        let offset = database - midpoint;
        let micros = offset.num_microseconds().unwrap_or_default();
        self.offset_micros.store(micros, Ordering::Relaxed);
        offset
    }
}

impl<C: Clock> Clock for DatabaseClock<C> {
    fn now(&self) -> DateTime<Utc> {
        let offset = TimeDelta::microseconds(self.offset_micros.load(Ordering::Relaxed));
        (self.base.now() + offset).trunc_subsecs(6)
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += span(by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Converts a `std` duration into a `chrono` one, saturating.
pub fn span(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_clock_follows_the_database_not_its_base() {
        let start = Utc::now().trunc_subsecs(6);
        let base = ManualClock::new(start);
        let clock = DatabaseClock::new(base);
        let database = start - TimeDelta::minutes(10);
        let offset = clock.measured(start, database, start + TimeDelta::milliseconds(2));
        assert_eq!(offset, TimeDelta::minutes(-10) - TimeDelta::milliseconds(1));
        assert_eq!(clock.now(), database - TimeDelta::milliseconds(1));
    }

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let start = Utc::now();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.now(), start + TimeDelta::seconds(90));
    }
}
