//! What the module needs from the PAM application that loaded it: the
//! items it was given, the conversation with the person, and the system
//! log. `ffi::Handle` implements it over libpam; everything else is written
//! against this trait, so it is safe Rust.

/// A PAM item the module reads (`pam_get_item`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// The service name (`sshd`, `sudo`, `login`).
    Service,
    /// The terminal, when there is one.
    Tty,
    /// The remote host (ssh), when known.
    Rhost,
    /// The requesting user (sudo: who runs it), when known.
    Ruser,
}

/// A syslog priority (the facility is always `LOG_AUTHPRIV`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something an administrator must look at (fallback used, bad signature).
    Warning,
    /// A refused login or a broken setting.
    Error,
    /// The normal course of a login.
    Info,
}

/// Why the conversation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the PAM conversation failed (code {0})")]
pub struct ConversationError(pub i32);

/// The PAM application hosting the module, for the length of one call.
pub trait Host {
    /// The user being authenticated (`pam_get_user`); `None` when the
    /// application cannot say.
    fn user(&self) -> Option<String>;
    /// A string item, `None` when unset or not UTF-8.
    fn item(&self, item: Item) -> Option<String>;
    /// Shows `text` to the person (PAM_TEXT_INFO).
    fn show(&self, text: &str) -> Result<(), ConversationError>;
    /// Asks the person to press Enter after `text` (PAM_PROMPT_ECHO_ON);
    /// the answer itself is ignored.
    fn wait_for_enter(&self, text: &str) -> Result<(), ConversationError>;
    /// Writes one line to the system log.
    fn log(&self, level: Level, text: &str);
}

/// What the module answers libpam.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// PAM_SUCCESS: the device confirmed (or the `allow` fallback applied).
    Success,
    /// PAM_AUTH_ERR: anything else the module decided.
    AuthError,
    /// PAM_SYSTEM_ERR: the module itself failed (a panic was caught).
    SystemError,
}
