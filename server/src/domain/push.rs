//! Rules of push logins: number matching and the anti-fatigue limits.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::{CryptoRng, RngCore};

use super::clock::span;
use super::{TransactionId, TransactionState};

/// Anti-fatigue limits for pushes to one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushLimits {
    /// Pushes allowed within [`PushLimits::window`] without an accepted one.
    pub unanswered: i64,
    /// The window over which unanswered pushes are counted.
    pub window: Duration,
    /// How long pushes to a user stay blocked after a `not_me` denial.
    pub fraud_cooldown: Duration,
}

impl Default for PushLimits {
    fn default() -> Self {
        Self {
            unanswered: 5,
            window: Duration::from_secs(600),
            fraud_cooldown: Duration::from_secs(3600),
        }
    }
}

/// What storage knows about recent pushes to one user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushHistory {
    /// When the user last denied a login as `not_me`.
    pub last_fraud_report: Option<DateTime<Utc>>,
    /// The user's open, unexpired push and its expiry.
    pub open: Option<(TransactionId, DateTime<Utc>)>,
    /// Pushes created within the window and after the last accepted one.
    pub unanswered: i64,
}

/// Which pushes to a user count as unanswered: those created after
/// `since` (the start of the window) and after the completion of the
/// user's last push that reached `answered`. The store counts them with
/// both values bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnansweredPushes {
    /// The start of the window.
    pub since: DateTime<Utc>,
    /// The state of a push that answers the ones before it.
    pub answered: TransactionState,
}

/// Why a push to a user is refused for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushRefusal {
    /// The user reported a login as not theirs.
    FraudCooldown {
        /// When.
        reported: DateTime<Utc>,
        /// Pushes are blocked until then.
        until: DateTime<Utc>,
    },
    /// Another push to the user is still open.
    OpenPush {
        /// The open push.
        transaction_id: TransactionId,
        /// Its expiry.
        until: DateTime<Utc>,
    },
    /// Too many pushes went unanswered.
    TooManyUnanswered {
        /// How many.
        count: i64,
        /// Over which window.
        window: Duration,
    },
}

impl PushLimits {
    /// Which pushes count against [`PushLimits::unanswered`] at `now`:
    /// those of the last [`PushLimits::window`] not followed by an accepted
    /// push.
    pub fn unanswered_at(&self, now: DateTime<Utc>) -> UnansweredPushes {
        UnansweredPushes {
            since: now - span(self.window),
            answered: TransactionState::Accepted,
        }
    }

    /// The anti-fatigue rules: a block after a fraud report, one open push
    /// per user, and a cap on unanswered pushes.
    pub fn check(&self, history: &PushHistory, now: DateTime<Utc>) -> Result<(), PushRefusal> {
        if let Some(reported) = history.last_fraud_report {
            let until = reported + span(self.fraud_cooldown);
            if until > now {
                return Err(PushRefusal::FraudCooldown { reported, until });
            }
        }
        if let Some((transaction_id, until)) = history.open {
            return Err(PushRefusal::OpenPush {
                transaction_id,
                until,
            });
        }
        if history.unanswered >= self.unanswered {
            return Err(PushRefusal::TooManyUnanswered {
                count: history.unanswered,
                window: self.window,
            });
        }
        Ok(())
    }
}

/// The number the login page shows and the three choices the device offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberMatch {
    /// The number to show on the login page (10–99).
    pub number: u8,
    /// Three distinct 2-digit numbers in random order, one of them `number`.
    pub choices: [u8; 3],
}

/// Uniform in `10..=99`, by rejection sampling (no modulo bias).
fn two_digits<R: RngCore + CryptoRng>(rng: &mut R) -> u8 {
    loop {
        let byte = (rng.next_u32() & 0x7f) as u8;
        if byte < 90 {
            return byte + 10;
        }
    }
}

impl NumberMatch {
    /// Draws a number and two distinct decoys, shuffled.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let number = two_digits(rng);
        let mut choices = [number, number, number];
        for slot in 1..3 {
            let mut decoy = two_digits(rng);
            while choices[..slot].contains(&decoy) {
                decoy = two_digits(rng);
            }
            choices[slot] = decoy;
        }
        // Fisher-Yates over three slots.
        for i in (1..3).rev() {
            let j = (rng.next_u32() % (i as u32 + 1)) as usize;
            choices.swap(i, j);
        }
        Self { number, choices }
    }

    /// The choices as stored (`"12,45,78"`).
    pub fn choices_text(&self) -> String {
        self.choices.map(|c| c.to_string()).join(",")
    }

    /// Parses stored choices; empty text means no number matching.
    pub fn parse_choices(text: &str) -> Option<Vec<u8>> {
        if text.is_empty() {
            return Some(Vec::new());
        }
        text.split(',').map(|part| part.parse().ok()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_are_three_distinct_two_digit_numbers_including_the_number() {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        for _ in 0..1000 {
            let matched = NumberMatch::generate(&mut rng);
            assert!((10..=99).contains(&matched.number));
            assert!(matched.choices.contains(&matched.number));
            assert!(matched.choices.iter().all(|c| (10..=99).contains(c)));
            let [a, b, c] = matched.choices;
            assert!(a != b && b != c && a != c);
        }
    }

    #[test]
    fn the_correct_number_lands_in_every_position() {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(2);
        let mut positions = [0usize; 3];
        for _ in 0..3000 {
            let matched = NumberMatch::generate(&mut rng);
            let at = matched.choices.iter().position(|&c| c == matched.number);
            positions[at.unwrap_or(0)] += 1;
        }
        assert!(positions.iter().all(|&n| n > 800), "{positions:?}");
    }

    #[test]
    fn fatigue_rules_block_after_fraud_while_open_and_after_too_many() {
        let limits = PushLimits::default();
        let now = Utc::now();
        assert_eq!(limits.check(&PushHistory::default(), now), Ok(()));
        let reported = now - chrono::TimeDelta::minutes(59);
        let fraud = PushHistory {
            last_fraud_report: Some(reported),
            ..PushHistory::default()
        };
        assert!(matches!(
            limits.check(&fraud, now),
            Err(PushRefusal::FraudCooldown { .. })
        ));
        assert_eq!(
            limits.check(&fraud, now + chrono::TimeDelta::minutes(2)),
            Ok(()),
            "the block ends after the cool-down"
        );
        let open = PushHistory {
            open: Some((TransactionId::random(), now)),
            ..PushHistory::default()
        };
        assert!(matches!(
            limits.check(&open, now),
            Err(PushRefusal::OpenPush { .. })
        ));
        let many = PushHistory {
            unanswered: 5,
            ..PushHistory::default()
        };
        assert!(matches!(
            limits.check(&many, now),
            Err(PushRefusal::TooManyUnanswered { count: 5, .. })
        ));
        let four = PushHistory {
            unanswered: 4,
            ..PushHistory::default()
        };
        assert_eq!(limits.check(&four, now), Ok(()));
    }

    #[test]
    fn stored_choices_round_trip() {
        let matched = NumberMatch {
            number: 45,
            choices: [12, 45, 78],
        };
        assert_eq!(matched.choices_text(), "12,45,78");
        assert_eq!(
            NumberMatch::parse_choices("12,45,78"),
            Some(vec![12, 45, 78])
        );
        assert_eq!(NumberMatch::parse_choices(""), Some(vec![]));
        assert_eq!(NumberMatch::parse_choices("x"), None);
    }
}
