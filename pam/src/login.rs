//! What one login asks for: the Assent user id made from the PAM user
//! (`user_map`), the question shown on the device (`message`) and the facts
//! shown beside it (service, host, remote host, terminal), cut to the API's
//! limits.

use std::collections::BTreeMap;

use crate::host::{Host, Item};
use crate::settings::Settings;

/// The API's limit on `message`, in Unicode scalar values.
const MAX_MESSAGE_CHARS: usize = 200;
/// The API's limit on a user id.
const MAX_USER_ID_CHARS: usize = 128;
/// The API's limit on a context value.
const MAX_CONTEXT_CHARS: usize = 256;

/// One login's push, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRequest {
    /// The PAM user, as the application gave it.
    pub pam_user: String,
    /// The Assent user id (the PAM user through `user_map`).
    pub user_id: String,
    /// The question shown on the device.
    pub message: String,
    /// The facts shown beside it.
    pub context: BTreeMap<String, String>,
}

/// Why no push can be made for this user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the user id {user_id:?} made by `user_map` is not 1–128 characters")]
pub struct BadUserId {
    /// What the mapping made.
    pub user_id: String,
}

impl LoginRequest {
    /// Builds the push for `pam_user` from the settings and the items the
    /// application set.
    pub fn new(settings: &Settings, host: &dyn Host, pam_user: &str) -> Result<Self, BadUserId> {
        let user_id = settings.user_map.render(|_| pam_user.to_owned());
        let length = user_id.chars().count();
        if user_id.trim().is_empty() || length > MAX_USER_ID_CHARS {
            return Err(BadUserId { user_id });
        }
        let mut facts: Vec<(&str, String)> = vec![
            ("user", pam_user.to_owned()),
            ("host", host_name()),
            (
                "service",
                host.item(Item::Service).unwrap_or_else(|| "pam".to_owned()),
            ),
        ];
        for (name, item) in [
            ("rhost", Item::Rhost),
            ("tty", Item::Tty),
            ("ruser", Item::Ruser),
        ] {
            if let Some(value) = host.item(item).filter(|value| !value.is_empty()) {
                facts.push((name, value));
            }
        }
        let value = |name: &str| {
            facts
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.clone())
                .unwrap_or_default()
        };
        let message: String = settings
            .message
            .render(value)
            .chars()
            .take(MAX_MESSAGE_CHARS)
            .collect();
        let context = facts
            .iter()
            .map(|(key, value)| {
                let value = value
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_CONTEXT_CHARS)
                    .collect();
                ((*key).to_owned(), value)
            })
            .collect();
        Ok(Self {
            pam_user: pam_user.to_owned(),
            user_id,
            message,
            context,
        })
    }
}

/// This machine's name, as the device shows it.
fn host_name() -> String {
    let name = rustix::system::uname();
    let name = name.nodename().to_string_lossy().into_owned();
    if name.is_empty() {
        "this machine".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{ConversationError, Level};

    struct FakeHost;

    impl Host for FakeHost {
        fn user(&self) -> Option<String> {
            Some("alice".to_owned())
        }
        fn item(&self, item: Item) -> Option<String> {
            match item {
                Item::Service => Some("sshd".to_owned()),
                Item::Rhost => Some("203.0.113.7\r\nEvil: yes".to_owned()),
                Item::Tty => Some(String::new()),
                Item::Ruser => None,
            }
        }
        fn show(&self, _: &str) -> Result<(), ConversationError> {
            Ok(())
        }
        fn wait_for_enter(&self, _: &str) -> Result<(), ConversationError> {
            Ok(())
        }
        fn log(&self, _: Level, _: &str) {}
    }

    fn settings(extra: &str) -> Settings {
        let text = format!("server = \"http://127.0.0.1:1\"\napi_key = \"k\"\n{extra}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pam.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        crate::settings::load(&path).unwrap()
    }

    #[test]
    fn the_user_map_makes_the_assent_user_id() {
        let request = LoginRequest::new(
            &settings("user_map = \"{user}@corp\"\n"),
            &FakeHost,
            "alice",
        )
        .unwrap();
        assert_eq!(request.user_id, "alice@corp");
        assert_eq!(request.pam_user, "alice");
    }

    #[test]
    fn the_message_names_service_and_remote_host_without_control_characters() {
        let request = LoginRequest::new(
            &settings("message = \"{service} login from {rhost}\"\n"),
            &FakeHost,
            "alice",
        )
        .unwrap();
        assert_eq!(request.message, "sshd login from 203.0.113.7Evil: yes");
        assert_eq!(request.context["rhost"], "203.0.113.7Evil: yes");
        assert_eq!(request.context["service"], "sshd");
        assert!(
            !request.context.contains_key("tty"),
            "empty items are left out"
        );
    }

    #[test]
    fn long_messages_are_cut_to_the_api_limit() {
        let long = "x".repeat(300);
        let request = LoginRequest::new(
            &settings(&format!("message = \"{long}\"\n")),
            &FakeHost,
            "a",
        )
        .unwrap();
        assert_eq!(request.message.chars().count(), 200);
    }

    #[test]
    fn an_over_long_user_id_is_refused() {
        let user = "u".repeat(129);
        assert!(LoginRequest::new(&settings(""), &FakeHost, &user).is_err());
    }
}
