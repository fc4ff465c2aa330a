//! The `message` and `user_map` settings: text with `{name}` placeholders,
//! checked when the settings are read and filled in per login. Filled-in
//! values lose their control characters, so a user or host name cannot
//! forge lines of its own on the device or in the log.

/// What `message` may name.
pub const MESSAGE_PLACEHOLDERS: &[&str] = &["user", "service", "host", "rhost", "tty", "ruser"];
/// What `user_map` may name.
pub const USER_MAP_PLACEHOLDERS: &[&str] = &["user"];

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Placeholder(&'static str),
}

/// A checked template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Piece>);

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{name}` with a name the setting does not offer.
    #[error("unknown placeholder {{{name}}} (known: {known})")]
    Unknown {
        /// The name written.
        name: String,
        /// The names offered.
        known: String,
    },
    /// A `{` without its `}`, or a lone `}`.
    #[error("unbalanced {{ or }} (placeholders are written {{user}})")]
    Unbalanced,
    /// Nothing to show.
    #[error("must not be empty")]
    Empty,
}

impl Template {
    /// Checks `text` against the placeholders the setting offers.
    pub fn parse(text: &str, allowed: &[&'static str]) -> Result<Self, TemplateError> {
        if text.trim().is_empty() {
            return Err(TemplateError::Empty);
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            let (before, from) = rest.split_at(open);
            if from.starts_with('}') {
                return Err(TemplateError::Unbalanced);
            }
            let close = from.find('}').ok_or(TemplateError::Unbalanced)?;
            let name = &from[1..close];
            if name.contains('{') {
                return Err(TemplateError::Unbalanced);
            }
            let known = allowed
                .iter()
                .find(|known| **known == name)
                .ok_or_else(|| TemplateError::Unknown {
                    name: name.to_owned(),
                    known: allowed.join(", "),
                })?;
            if !before.is_empty() {
                pieces.push(Piece::Text(before.to_owned()));
            }
            pieces.push(Piece::Placeholder(known));
            rest = &from[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Self(pieces))
    }

    /// Fills in the placeholders with `value(name)`, without control
    /// characters (placeholder names were checked by `parse`).
    pub fn render(&self, value: impl Fn(&str) -> String) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Placeholder(name) => {
                    out.extend(value(name).chars().filter(|c| !c.is_control()));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(name: &str) -> String {
        match name {
            "user" => "alice".to_owned(),
            "host" => "web1\nFAKE LINE".to_owned(),
            other => format!("<{other}>"),
        }
    }

    #[test]
    fn placeholders_are_filled_in_once_and_not_reinterpreted() {
        let template = Template::parse("corp-{user}@example.com", USER_MAP_PLACEHOLDERS).unwrap();
        assert_eq!(template.render(values), "corp-alice@example.com");
        // A user called "{host}" stays "{host}".
        assert_eq!(
            template.render(|_| "{host}".to_owned()),
            "corp-{host}@example.com"
        );
    }

    #[test]
    fn filled_in_values_lose_their_control_characters() {
        let template = Template::parse("Log in on {host}?", MESSAGE_PLACEHOLDERS).unwrap();
        assert_eq!(template.render(values), "Log in on web1FAKE LINE?");
    }

    #[test]
    fn unknown_and_unbalanced_placeholders_are_refused() {
        let error = Template::parse("{host}", USER_MAP_PLACEHOLDERS).unwrap_err();
        assert_eq!(
            error,
            TemplateError::Unknown {
                name: "host".to_owned(),
                known: "user".to_owned()
            }
        );
        for text in ["{user", "user}", "{{user}}", "{us{er}"] {
            assert_eq!(
                Template::parse(text, USER_MAP_PLACEHOLDERS),
                Err(TemplateError::Unbalanced),
                "{text}"
            );
        }
        assert_eq!(
            Template::parse(" ", USER_MAP_PLACEHOLDERS),
            Err(TemplateError::Empty)
        );
    }
}
