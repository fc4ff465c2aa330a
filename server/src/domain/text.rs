//! Text a person reads on a device is plain text: no control, format,
//! separator, private-use, surrogate or unassigned code points (so no
//! bidirectional overrides, zero-width characters or line separators can
//! make a login request read as something else), normalised to NFC.

use unicode_general_category::{GeneralCategory, get_general_category};
use unicode_normalization::UnicodeNormalization;

use super::InputError;

/// Why a character may not be shown, or `None` if it may.
fn hidden_kind(c: char) -> Option<&'static str> {
    match get_general_category(c) {
        GeneralCategory::Control => Some("a control character"),
        GeneralCategory::Format => Some("an invisible formatting character"),
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
            Some("a line or paragraph separator")
        }
        GeneralCategory::PrivateUse => Some("a private-use character"),
        GeneralCategory::Surrogate => Some("a surrogate"),
        GeneralCategory::Unassigned => Some("an unassigned code point"),
        _ => None,
    }
}

/// Refuses the first character that may not be shown, naming it and its
/// position (counted in characters from 1, as sent).
pub fn check_plain(field: &'static str, text: &str) -> Result<(), InputError> {
    match text
        .chars()
        .enumerate()
        .find_map(|(i, c)| hidden_kind(c).map(|kind| (i, c, kind)))
    {
        Some((index, c, kind)) => Err(InputError::new(
            field,
            format!(
                "character {} is U+{:04X}, {kind}; text shown on a device must be plain \
                 (no control, formatting, separator, private-use or unassigned characters)",
                index + 1,
                u32::from(c)
            ),
        )),
        None => Ok(()),
    }
}

/// Checks and normalises text shown on a device.
pub fn plain(field: &'static str, text: &str) -> Result<String, InputError> {
    check_plain(field, text)?;
    Ok(text.nfc().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoofing_characters_are_refused_with_their_code_point_and_position() {
        for (c, kind) in [
            ('\u{202E}', "formatting"),
            ('\u{2066}', "formatting"),
            ('\u{200B}', "formatting"),
            ('\u{FEFF}', "formatting"),
            ('\u{2028}', "separator"),
            ('\u{2029}', "separator"),
            ('\u{0007}', "control"),
            ('\u{E000}', "private-use"),
            ('\u{0378}', "unassigned"),
        ] {
            let text = format!("ok{c}");
            let error = check_plain("message", &text).err();
            let problem = error.map(|e| e.problem).unwrap_or_default();
            assert!(
                problem.contains(&format!("U+{:04X}", u32::from(c))) && problem.contains(kind),
                "{problem}"
            );
            assert!(problem.starts_with("character 3 "), "{problem}");
        }
    }

    #[test]
    fn ordinary_text_in_any_script_passes_and_is_nfc() {
        assert!(
            check_plain(
                "message",
                "Log in to Example Shop from Firefox in Berlin? 🔐 日本語 עברית"
            )
            .is_ok()
        );
        // "e" + combining acute becomes one precomposed character.
        assert_eq!(
            plain("message", "Caf\u{0065}\u{0301}").ok(),
            Some("Caf\u{00E9}".to_owned())
        );
    }
}
