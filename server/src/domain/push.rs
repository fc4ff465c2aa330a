//! Rules of push logins: number matching and the anti-fatigue limits.

use std::time::Duration;

use rand::{CryptoRng, RngCore};

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
