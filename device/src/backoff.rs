//! Reconnect delays: capped exponential backoff with full jitter, so a fleet of
//! agents cut off by one server restart does not come back in lockstep.

use std::time::Duration;

use rand::Rng;

/// First retry ceiling.
pub(crate) const BASE: Duration = Duration::from_millis(250);
/// Largest delay between two attempts.
pub(crate) const CAP: Duration = Duration::from_secs(30);
/// A session that stayed ready this long resets the backoff.
pub(crate) const STABLE_SESSION: Duration = Duration::from_secs(10);

/// Delay generator for consecutive failed connection attempts.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff starting at `base` and never exceeding `cap`.
    pub(crate) fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            failures: 0,
        }
    }

    /// The upper bound of the next delay: `min(cap, base · 2^failures)`.
    pub(crate) fn ceiling(&self) -> Duration {
        // 2^20 · 250 ms is far beyond any sane cap; stop doubling there.
        let factor = 1u32 << self.failures.min(20);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay before the next attempt, drawn uniformly from
    /// `[0, ceiling]` ("full jitter"); each call counts one more failure.
    pub(crate) fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = u64::try_from(self.ceiling().as_millis()).unwrap_or(u64::MAX);
        self.failures = self.failures.saturating_add(1);
        Duration::from_millis(rng.random_range(0..=ceiling))
    }

    /// Forgets past failures, after a session proved the server healthy.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(BASE, CAP)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn delays_stay_within_zero_and_the_cap() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut backoff = Backoff::default();
        for _ in 0..200 {
            let ceiling = backoff.ceiling();
            let delay = backoff.next_delay(&mut rng);
            assert!(delay <= ceiling, "{delay:?} > {ceiling:?}");
            assert!(delay <= CAP);
        }
        assert_eq!(backoff.ceiling(), CAP);
    }

    #[test]
    fn ceiling_doubles_from_the_base_until_the_cap() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut backoff = Backoff::default();
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            ceilings.push(backoff.ceiling().as_millis());
            backoff.next_delay(&mut rng);
        }
        assert_eq!(
            ceilings,
            [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
    }

    #[test]
    fn delays_grow_on_average() {
        let mut rng = StdRng::seed_from_u64(3);
        let mean_after = |failures: u32, rng: &mut StdRng| {
            let mut total = Duration::ZERO;
            for _ in 0..200 {
                let mut backoff = Backoff::default();
                for _ in 0..failures {
                    backoff.next_delay(rng);
                }
                total += backoff.next_delay(rng);
            }
            total / 200
        };
        let early = mean_after(0, &mut rng);
        let late = mean_after(6, &mut rng);
        assert!(late > early * 4, "{early:?} vs {late:?}");
    }

    #[test]
    fn reset_returns_to_the_base() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut backoff = Backoff::default();
        for _ in 0..8 {
            backoff.next_delay(&mut rng);
        }
        backoff.reset();
        assert_eq!(backoff.ceiling(), BASE);
    }
}
