//! The JSON shapes the command line prints, one per API object. Field names
//! are a contract with scripts: empty server strings become `null`, states
//! use their SPEC names, timestamps are RFC 3339 UTC strings. New fields are
//! only ever added; existing ones keep their name and meaning.

mod device;
mod login;
mod transaction;

pub use device::DeviceView;
pub use login::{EnrollmentView, LoginView, PushLoginView};
pub use transaction::{EventView, TransactionView};

use chrono::{DateTime, SecondsFormat};
use prost_types::Timestamp;

/// `None` for the empty string, which proto3 uses for "not set".
pub fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// A protobuf timestamp as RFC 3339 UTC text (`2025-01-31T12:00:00Z`); `None` when unset or out of range.
pub fn rfc3339(timestamp: Option<&Timestamp>) -> Option<String> {
    let timestamp = timestamp?;
    let nanos = u32::try_from(timestamp.nanos).ok()?;
    let time = DateTime::from_timestamp(timestamp.seconds, nanos)?;
    Some(time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_invalid_timestamps_are_none() {
        assert_eq!(rfc3339(None), None);
        assert_eq!(
            rfc3339(Some(&Timestamp {
                seconds: 0,
                nanos: -1
            })),
            None
        );
    }

    #[test]
    fn fractional_seconds_only_when_non_zero() {
        let whole = Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        };
        assert_eq!(rfc3339(Some(&whole)).unwrap(), "2023-11-14T22:13:20Z");
        let half = Timestamp {
            seconds: 0,
            nanos: 500_000_000,
        };
        assert_eq!(rfc3339(Some(&half)).unwrap(), "1970-01-01T00:00:00.500Z");
    }

    #[test]
    fn empty_strings_are_none() {
        assert_eq!(non_empty(""), None);
        assert_eq!(non_empty("a").as_deref(), Some("a"));
    }
}
