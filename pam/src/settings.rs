//! The module's settings: its arguments (`config=PATH`) and the TOML file
//! they name, checked before it is parsed — owned by root or by the
//! process's effective uid, and no permission for group or others, since it
//! holds the application's API key.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::template::{Template, TemplateError};

/// The settings file read when no `config=` argument is given.
pub const DEFAULT_PATH: &str = "/etc/assent/pam.toml";
/// The question shown on the device unless `message` says otherwise.
pub const DEFAULT_MESSAGE: &str = "Log in as {user} on {host} ({service})?";
/// The user id sent unless `user_map` says otherwise: the PAM user as is.
pub const DEFAULT_USER_MAP: &str = "{user}";
/// Seconds to wait for the device unless `timeout_seconds` says otherwise.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 60;
/// The settings file is at most this long (it holds a handful of lines).
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// What to do when the server cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// Refuse the login (PAM_AUTH_ERR). The default.
    #[default]
    Deny,
    /// Let the user in without a device confirmation (PAM_SUCCESS), logged
    /// as a warning each time.
    Allow,
}

/// The application's API key; never printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(String);

impl ApiKey {
    /// The key itself, for the `authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The settings file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    server: String,
    api_key: ApiKey,
    ca_cert: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    timeout_seconds: Option<u32>,
    #[serde(default)]
    fallback: Fallback,
    message: Option<String>,
    user_map: Option<String>,
    number_matching: Option<bool>,
    #[serde(default)]
    wait_for_enter: bool,
}

/// The module's settings, checked.
#[derive(Debug)]
pub struct Settings {
    /// Server URL, `http://` or `https://`.
    pub server: String,
    /// The application's API key.
    pub api_key: ApiKey,
    /// PEM CA for an `https://` server; the system bundle when unset.
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate and key presented to a server with mutual
    /// TLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// How long the whole login may wait for the device (10–600 s); also
    /// the push's TTL.
    pub timeout: Duration,
    /// What to do when the server cannot be reached.
    pub fallback: Fallback,
    /// The question shown on the device.
    pub message: Template,
    /// The Assent user id made from the PAM user.
    pub user_map: Template,
    /// Whether the person must pick on the device the number shown at login.
    pub number_matching: bool,
    /// Whether to ask the person to press Enter once they answered (needed
    /// where the application shows information only with a prompt, as
    /// sshd's keyboard-interactive does).
    pub wait_for_enter: bool,
}

/// Why the settings cannot be used. No variant carries a setting's value.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// An argument the module does not know.
    #[error("unknown module argument {0:?} (the only one is config=PATH)")]
    UnknownArgument(String),
    /// The file cannot be opened or read.
    #[error("cannot read the settings file {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Someone else than root (or the effective uid) owns the file.
    #[error(
        "the settings file {path} is owned by uid {owner}; it holds the API key, so it must be \
         owned by root (or by uid {euid}, the process's effective uid)"
    )]
    WrongOwner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The effective uid.
        euid: u32,
    },
    /// Group or others may access the file.
    #[error(
        "the settings file {path} has mode {mode:04o}; it holds the API key, so group and others \
         must have no access (chmod 600)"
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Not a regular file, or too long.
    #[error("the settings file {0} is not a regular file of at most 64 KiB")]
    NotAFile(PathBuf),
    /// Not valid TOML or a wrong setting; only the line and key are named,
    /// never the text, which could be the key.
    #[error(
        "the settings file {path} is invalid{where_}; settings: server, api_key, ca_cert, \
         client_cert, client_key, timeout_seconds, fallback (deny|allow), message, user_map, number_matching, wait_for_enter"
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// " at line N (setting `key`)" when known.
        where_: String,
    },
    /// A setting's value is out of range.
    #[error("the settings file {path}: {problem}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// The settings file named by the module arguments.
pub fn path_from_args(args: &[String]) -> Result<PathBuf, SettingsError> {
    let mut path = PathBuf::from(DEFAULT_PATH);
    for arg in args {
        match arg.strip_prefix("config=") {
            Some(value) if !value.is_empty() => path = PathBuf::from(value),
            _ => return Err(SettingsError::UnknownArgument(arg.clone())),
        }
    }
    Ok(path)
}

/// Reads, checks and parses the settings file.
pub fn load(path: &Path) -> Result<Settings, SettingsError> {
    let unreadable = |source| SettingsError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    // The checks look at the open file, not at the path again.
    let metadata = file.metadata().map_err(unreadable)?;
    check_access(path, &metadata, rustix::process::geteuid().as_raw())?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(unreadable)?;
    parse(path, &text)
}

/// Refuses a file that is not a small regular file owned by root (or
/// `euid`) and closed to group and others.
fn check_access(path: &Path, metadata: &std::fs::Metadata, euid: u32) -> Result<(), SettingsError> {
    if !metadata.is_file() || metadata.len() > MAX_FILE_BYTES {
        return Err(SettingsError::NotAFile(path.to_owned()));
    }
    let owner = metadata.uid();
    if owner != 0 && owner != euid {
        return Err(SettingsError::WrongOwner {
            path: path.to_owned(),
            owner,
            euid,
        });
    }
    let mode = metadata.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SettingsError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Parses the file's text.
fn parse(path: &Path, text: &str) -> Result<Settings, SettingsError> {
    let file: File = toml::from_str(text).map_err(|error| SettingsError::Invalid {
        path: path.to_owned(),
        where_: locate(text, error.span()),
    })?;
    let bad = |problem: String| SettingsError::BadValue {
        path: path.to_owned(),
        problem,
    };
    let server = file.server.trim().to_owned();
    if !(server.starts_with("http://") || server.starts_with("https://")) {
        return Err(bad(
            "`server` must start with http:// or https://".to_owned()
        ));
    }
    if file.ca_cert.is_some() && server.starts_with("http://") {
        return Err(bad(
            "`ca_cert` is set but `server` is plain http://".to_owned()
        ));
    }
    let client_identity = match (file.client_cert, file.client_key) {
        (Some(_), Some(_)) if server.starts_with("http://") => {
            return Err(bad(
                "`client_cert` is set but `server` is plain http://".to_owned()
            ));
        }
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            return Err(bad(
                "set both `client_cert` and `client_key`, or neither".to_owned()
            ));
        }
    };
    let key = file.api_key.expose();
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad(
            "`api_key` must be the key as `assent-server app create` printed it".to_owned(),
        ));
    }
    let timeout_seconds = file.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS);
    if !(10..=600).contains(&timeout_seconds) {
        return Err(bad(format!(
            "`timeout_seconds` must be 10–600 (the push's lifetime), not {timeout_seconds}"
        )));
    }
    let template = |name: &str, text: &str, allowed: &[&'static str]| {
        Template::parse(text, allowed)
            .map_err(|error: TemplateError| bad(format!("`{name}`: {error}")))
    };
    let message = template(
        "message",
        file.message.as_deref().unwrap_or(DEFAULT_MESSAGE),
        crate::template::MESSAGE_PLACEHOLDERS,
    )?;
    let user_map = template(
        "user_map",
        file.user_map.as_deref().unwrap_or(DEFAULT_USER_MAP),
        crate::template::USER_MAP_PLACEHOLDERS,
    )?;
    Ok(Settings {
        server,
        api_key: file.api_key,
        ca_cert: file.ca_cert,
        client_identity,
        timeout: Duration::from_secs(u64::from(timeout_seconds)),
        fallback: file.fallback,
        message,
        user_map,
        number_matching: file.number_matching.unwrap_or(true),
        wait_for_enter: file.wait_for_enter,
    })
}

/// " at line N (setting `key`)" for a parse error's span: the key is the
/// text before `=` on that line, when it looks like a key. Never the value.
fn locate(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let start = span.start.min(text.len());
    let line_number = text
        .get(..start)
        .map_or(0, |before| before.matches('\n').count())
        + 1;
    let line = text.lines().nth(line_number - 1).unwrap_or_default();
    let key = line.split_once('=').map(|(key, _)| key.trim());
    match key {
        Some(key)
            if !key.is_empty()
                && key.len() <= 64
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
        {
            format!(" at line {line_number} (setting `{key}`)")
        }
        _ => format!(" at line {line_number}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const KEY: &str = "ak_secret-value_123";

    fn minimal() -> String {
        format!("server = \"http://127.0.0.1:50051\"\napi_key = \"{KEY}\"\n")
    }

    #[test]
    fn a_minimal_file_gets_the_documented_defaults() {
        let settings = parse(Path::new("p"), &minimal()).unwrap();
        assert_eq!(settings.fallback, Fallback::Deny);
        assert_eq!(settings.timeout, Duration::from_secs(60));
        assert!(settings.number_matching);
        assert!(!settings.wait_for_enter);
        assert_eq!(settings.api_key.expose(), KEY);
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_https() {
        let https = format!("server = \"https://assent.example\"\napi_key = \"{KEY}\"\n");
        let both = format!("{https}client_cert = \"/c.pem\"\nclient_key = \"/k.pem\"\n");
        let settings = parse(Path::new("p"), &both).unwrap();
        assert_eq!(
            settings.client_identity,
            Some((PathBuf::from("/c.pem"), PathBuf::from("/k.pem")))
        );
        let alone = format!("{https}client_cert = \"/c.pem\"\n");
        assert!(parse(Path::new("p"), &alone).is_err());
        let plain = format!(
            "{}client_cert = \"/c.pem\"\nclient_key = \"/k.pem\"\n",
            minimal()
        );
        assert!(parse(Path::new("p"), &plain).is_err());
    }

    #[test]
    fn fallback_allow_must_be_spelled_out() {
        let text = format!("{}fallback = \"allow\"\n", minimal());
        assert_eq!(
            parse(Path::new("p"), &text).unwrap().fallback,
            Fallback::Allow
        );
        let text = format!("{}fallback = \"yes\"\n", minimal());
        assert!(matches!(
            parse(Path::new("p"), &text),
            Err(SettingsError::Invalid { .. })
        ));
    }

    #[test]
    fn a_misspelt_setting_is_refused_not_ignored() {
        let text = format!("{}falback = \"allow\"\n", minimal());
        let error = parse(Path::new("p"), &text).unwrap_err().to_string();
        assert!(error.contains("line 3 (setting `falback`)"), "{error}");
    }

    #[test]
    fn errors_never_quote_the_api_key() {
        for text in [
            format!("server = \"http://x\"\napi_key = {KEY}\n"),
            format!("server = \"http://x\"\napi_key = [\"{KEY}\"]\n"),
            format!("server = \"http://x\"\ntimeout_seconds = \"{KEY}\"\napi_key = \"k\"\n"),
            format!("server = \"{KEY}\"\napi_key = \"{KEY}\"\n"),
        ] {
            let error = parse(Path::new("p"), &text).unwrap_err();
            assert!(!error.to_string().contains(KEY), "{error}");
            assert!(!format!("{error:?}").contains(KEY), "{error:?}");
        }
        let settings = parse(Path::new("p"), &minimal()).unwrap();
        assert!(!format!("{settings:?}").contains(KEY));
    }

    #[test]
    fn out_of_range_timeouts_are_refused() {
        for timeout in [0, 9, 601] {
            let text = format!("{}timeout_seconds = {timeout}\n", minimal());
            let error = parse(Path::new("p"), &text).unwrap_err().to_string();
            assert!(error.contains("10–600"), "{error}");
        }
    }

    #[test]
    fn the_server_url_needs_a_scheme() {
        let text = format!("server = \"127.0.0.1:50051\"\napi_key = \"{KEY}\"\n");
        let error = parse(Path::new("p"), &text).unwrap_err().to_string();
        assert!(error.contains("http:// or https://"), "{error}");
    }

    #[test]
    fn only_the_config_argument_is_accepted() {
        assert_eq!(path_from_args(&[]).unwrap(), Path::new(DEFAULT_PATH));
        let args = vec!["config=/tmp/x.toml".to_owned()];
        assert_eq!(path_from_args(&args).unwrap(), Path::new("/tmp/x.toml"));
        let args = vec!["confg=/tmp/x.toml".to_owned()];
        assert!(matches!(
            path_from_args(&args),
            Err(SettingsError::UnknownArgument(_))
        ));
    }

    #[test]
    fn a_file_readable_by_group_or_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pam.toml");
        std::fs::write(&path, minimal()).unwrap();
        for mode in [0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let error = load(&path).unwrap_err().to_string();
            assert!(error.contains("chmod 600"), "{error}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load(&path).is_ok());
    }

    #[test]
    fn a_file_owned_by_another_user_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pam.toml");
        std::fs::write(&path, minimal()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let euid = rustix::process::geteuid().as_raw();
        // Root hands the file to `nobody`; anyone else pretends to run as
        // another uid. Either way the owner is neither root nor the euid.
        let as_euid = if euid == 0 {
            std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
            0
        } else {
            euid + 1
        };
        let metadata = std::fs::metadata(&path).unwrap();
        let error = check_access(&path, &metadata, as_euid)
            .unwrap_err()
            .to_string();
        assert!(error.contains("must be owned by root"), "{error}");
        assert!(check_access(&path, &metadata, metadata.uid()).is_ok());
    }
}
