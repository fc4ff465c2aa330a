//! Number matching: the numbers a confirmation request offers, and how a
//! pick (typed at the prompt, printed by an `exec:` command) is read.

use std::fmt;

use serde::Serialize;

/// How many numbers a request offers under number matching.
const CHOICE_COUNT: usize = 3;

/// Why a request's `number_choices` cannot be offered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidChoices {
    /// Not exactly three numbers.
    #[error("expected {CHOICE_COUNT} numbers, got {0}")]
    Count(usize),
    /// A number outside 10–99.
    #[error("{0} is not a 2-digit number")]
    OutOfRange(u32),
    /// The same number twice.
    #[error("{0} is offered twice")]
    Duplicate(u32),
}

/// Why a text does not pick one of the offered numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPick {
    /// Nothing but white space.
    #[error("no number given")]
    Empty,
    /// Something other than decimal digits.
    #[error("not a decimal number")]
    NotANumber,
    /// A number that was not offered.
    #[error("{0} is not one of the numbers offered")]
    NotAChoice(u32),
}

/// The numbers offered under number matching: either none (no number
/// matching) or three distinct numbers from 10 to 99, in the server's order.
/// Serialises as a JSON array (empty without number matching).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct NumberChoices(Vec<u32>);

impl NumberChoices {
    /// Checks the request's `number_choices`; an empty list means no number
    /// matching.
    pub fn parse(raw: &[u32]) -> Result<Self, InvalidChoices> {
        if raw.is_empty() {
            return Ok(Self::default());
        }
        if raw.len() != CHOICE_COUNT {
            return Err(InvalidChoices::Count(raw.len()));
        }
        for (index, &number) in raw.iter().enumerate() {
            if !(10..=99).contains(&number) {
                return Err(InvalidChoices::OutOfRange(number));
            }
            if raw[..index].contains(&number) {
                return Err(InvalidChoices::Duplicate(number));
            }
        }
        Ok(Self(raw.to_vec()))
    }

    /// Whether the request asks for number matching.
    pub fn is_offered(&self) -> bool {
        !self.0.is_empty()
    }

    /// The numbers offered, in the server's order (empty without number
    /// matching).
    pub fn as_slice(&self) -> &[u32] {
        &self.0
    }

    /// Whether `number` is one of the numbers offered.
    pub fn contains(&self, number: u32) -> bool {
        self.0.contains(&number)
    }

    /// Reads a pick: decimal digits (white space around them is ignored)
    /// naming one of the offered numbers.
    pub fn pick(&self, text: &str) -> Result<u32, InvalidPick> {
        let text = text.trim();
        if text.is_empty() {
            return Err(InvalidPick::Empty);
        }
        if !text.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(InvalidPick::NotANumber);
        }
        let number = text.parse::<u32>().map_err(|_| InvalidPick::NotANumber)?;
        if self.contains(number) {
            Ok(number)
        } else {
            Err(InvalidPick::NotAChoice(number))
        }
    }
}

/// The offered numbers as a person reads them: `12, 45 or 78`.
impl fmt::Display for NumberChoices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        for (index, number) in self.0.iter().enumerate() {
            match index {
                0 => {}
                _ if index + 1 == count => f.write_str(" or ")?,
                _ => f.write_str(", ")?,
            }
            write!(f, "{number}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered() -> NumberChoices {
        NumberChoices::parse(&[12, 45, 78]).unwrap()
    }

    #[test]
    fn no_choices_means_no_number_matching() {
        let choices = NumberChoices::parse(&[]).unwrap();
        assert!(!choices.is_offered());
        assert_eq!(choices.pick("12"), Err(InvalidPick::NotAChoice(12)));
        assert_eq!(serde_json::to_string(&choices).unwrap(), "[]");
    }

    #[test]
    fn three_distinct_two_digit_numbers_are_offered() {
        let choices = offered();
        assert!(choices.is_offered());
        assert!(choices.contains(45) && !choices.contains(46));
        assert_eq!(serde_json::to_string(&choices).unwrap(), "[12,45,78]");
        assert_eq!(choices.to_string(), "12, 45 or 78");
    }

    #[test]
    fn malformed_choices_are_refused() {
        assert_eq!(
            NumberChoices::parse(&[12, 45]),
            Err(InvalidChoices::Count(2))
        );
        assert_eq!(
            NumberChoices::parse(&[12, 45, 78, 90]),
            Err(InvalidChoices::Count(4))
        );
        assert_eq!(
            NumberChoices::parse(&[12, 9, 78]),
            Err(InvalidChoices::OutOfRange(9))
        );
        assert_eq!(
            NumberChoices::parse(&[12, 100, 78]),
            Err(InvalidChoices::OutOfRange(100))
        );
        assert_eq!(
            NumberChoices::parse(&[12, 45, 12]),
            Err(InvalidChoices::Duplicate(12))
        );
    }

    #[test]
    fn a_pick_is_one_of_the_offered_numbers() {
        let choices = offered();
        assert_eq!(choices.pick("45"), Ok(45));
        assert_eq!(choices.pick(" 78\r\n"), Ok(78));
        assert_eq!(choices.pick("13"), Err(InvalidPick::NotAChoice(13)));
        assert_eq!(choices.pick("0"), Err(InvalidPick::NotAChoice(0)));
    }

    #[test]
    fn anything_but_decimal_digits_is_not_a_pick() {
        let choices = offered();
        assert_eq!(choices.pick(""), Err(InvalidPick::Empty));
        assert_eq!(choices.pick("  \n"), Err(InvalidPick::Empty));
        for text in [
            "y",
            "+45",
            "-12",
            "4 5",
            "45.0",
            "0x2d",
            "٤٥",
            "99999999999999999999",
        ] {
            assert_eq!(choices.pick(text), Err(InvalidPick::NotANumber), "{text:?}");
        }
    }
}
