//! Rate rules: a token bucket for API-key creation rates and the bad-OTP
//! cooling-off rule. Pure: callers pass the current time.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::clock::span;

/// Failed OTP submissions a device may make within [`OTP_FAILURE_WINDOW`].
pub const OTP_FAILURE_LIMIT: i64 = 5;
/// The window over which failed OTPs are counted; also the cooling-off period.
pub const OTP_FAILURE_WINDOW: Duration = Duration::from_secs(300);

/// Signatures of one device that may fail to verify at once (hellos and
/// decisions); past it the device is locked out of both until its allowance
/// refills, one every [`SIGNATURE_FAILURE_REFILL`].
pub const SIGNATURE_FAILURE_LIMIT: u32 = 5;

/// How long a device waits for one more failed-signature allowance.
pub const SIGNATURE_FAILURE_REFILL: Duration = Duration::from_secs(60);

/// The OTP strike rule at one moment: every OTP a device hands in takes a
/// strike first (a valid one gives it back); a device may take one while
/// its window, opened by its first strike, holds fewer than `limit`. A
/// window opened at or before `over_if_opened_by` is over, and the next
/// strike opens a new one at `now`. The store applies it in one atomic
/// statement and receives every one of these values bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrikeWindow {
    /// Strikes a window may hold.
    pub limit: i64,
    /// A window opened at or before this time is over.
    pub over_if_opened_by: DateTime<Utc>,
    /// Now: when a new window opens.
    pub now: DateTime<Utc>,
}

impl StrikeWindow {
    /// The server's rule ([`OTP_FAILURE_LIMIT`] strikes per
    /// [`OTP_FAILURE_WINDOW`]) at `now`.
    pub fn at(now: DateTime<Utc>) -> Self {
        Self::new(OTP_FAILURE_LIMIT, OTP_FAILURE_WINDOW, now)
    }

    /// `limit` strikes per `window`, at `now`.
    pub fn new(limit: i64, window: Duration, now: DateTime<Utc>) -> Self {
        Self {
            limit,
            over_if_opened_by: now - span(window),
            now,
        }
    }
}

/// A token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_second: f64,
    updated: DateTime<Utc>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(per_second: f64, burst: u32, now: DateTime<Utc>) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            tokens: burst,
            burst,
            per_second: per_second.max(f64::MIN_POSITIVE),
            updated: now,
        }
    }

    /// Whether the bucket has refilled completely by `now` (nothing to remember).
    pub fn is_full(&self, now: DateTime<Utc>) -> bool {
        let elapsed = (now - self.updated)
            .to_std()
            .unwrap_or_default()
            .as_secs_f64();
        self.tokens + elapsed * self.per_second >= self.burst
    }

    /// Takes one token, or says how long until one is available.
    pub fn take(&mut self, now: DateTime<Utc>) -> Result<(), Duration> {
        let elapsed = (now - self.updated)
            .to_std()
            .unwrap_or_default()
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.updated = self.updated.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.per_second,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strike_window_is_over_once_it_is_as_old_as_the_window() {
        let now = Utc::now();
        let rule = StrikeWindow::at(now);
        assert_eq!(rule.limit, OTP_FAILURE_LIMIT);
        assert_eq!(rule.now, now);
        assert_eq!(rule.over_if_opened_by, now - span(OTP_FAILURE_WINDOW));
    }

    #[test]
    fn burst_is_allowed_then_refused_with_a_retry_delay() {
        let start = Utc::now();
        let mut bucket = TokenBucket::new(2.0, 3, start);
        for _ in 0..3 {
            assert!(bucket.take(start).is_ok());
        }
        let retry = bucket.take(start).err();
        assert!(
            retry
                .is_some_and(|d| d > Duration::from_millis(400) && d <= Duration::from_millis(500))
        );
    }

    #[test]
    fn tokens_refill_over_time() {
        let start = Utc::now();
        let mut bucket = TokenBucket::new(10.0, 1, start);
        assert!(bucket.take(start).is_ok());
        assert!(bucket.take(start).is_err());
        assert!(
            bucket
                .take(start + chrono::TimeDelta::milliseconds(100))
                .is_ok()
        );
    }
}
