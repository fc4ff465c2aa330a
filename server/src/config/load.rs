//! Layering the sources: built-in defaults, the TOML file, the `ASSENT_*`
//! environment; a bad value is named by where it came from.

use std::path::{Path, PathBuf};

use super::ServerConfig;

/// A bad setting, named by where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML for these settings.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An environment variable has a value of the wrong form.
    #[error("environment variable {name} has an invalid value: {message}")]
    Env {
        /// The variable.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The database URL names no engine Assent has.
    #[error(
        "the database URL starts with {scheme:?}, which is no engine Assent has; use \
         postgres://USER@HOST/DB (or postgresql://), sqlite:///PATH, or no URL for the embedded \
         file (ASSENT_DATABASE_URL, --database-url, database_url)"
    )]
    DatabaseUrl {
        /// What the URL started with (never the URL: it may hold a password).
        scheme: String,
    },
}

impl ServerConfig {
    /// Checks the settings every command reads: the database URL's engine.
    pub fn check(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.database_url {
            let scheme = url
                .split_once(':')
                .map_or(url.as_str(), |(scheme, _)| scheme);
            if !matches!(scheme, "postgres" | "postgresql" | "sqlite") {
                return Err(ConfigError::DatabaseUrl {
                    scheme: scheme.chars().take(20).collect(),
                });
            }
        }
        Ok(())
    }

    /// Defaults, then `file` if given, then the environment as read by
    /// `env` (`ASSENT_` + the upper-cased key of every field; empty values
    /// count as unset), layered by `figment`.
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        use figment::Figment;
        use figment::providers::{Format as _, Serialized, Toml};
        let defaults = Self::default();
        let mut figment = Figment::from(Serialized::defaults(&defaults));
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            // Checked alone first, so an error names the file.
            figment
                .clone()
                .merge(Toml::string(&text))
                .extract::<Self>()
                .map_err(|error| ConfigError::Parse {
                    path: path.to_owned(),
                    message: error.to_string(),
                })?;
            figment = figment.merge(Toml::string(&text));
        }
        for key in Self::keys(&defaults) {
            let name = format!("ASSENT_{}", key.to_uppercase());
            let Some(value) = env(&name).filter(|value| !value.is_empty()) else {
                continue;
            };
            let parsed: figment::value::Value =
                value.parse().unwrap_or_else(|never| match never {});
            // A value that looks like a number or a boolean but belongs to
            // a text setting stays text.
            let layered = figment.clone().merge(Serialized::default(&key, parsed));
            figment = match layered.extract::<Self>() {
                Ok(_) => layered,
                Err(_) => {
                    let text = figment.clone().merge(Serialized::default(&key, &value));
                    text.extract::<Self>().map_err(|error| ConfigError::Env {
                        name: name.clone(),
                        message: error.kind.to_string(),
                    })?;
                    text
                }
            };
        }
        figment.extract().map_err(|error| ConfigError::Parse {
            path: file.map(Path::to_owned).unwrap_or_default(),
            message: error.to_string(),
        })
    }

    /// The name of every setting.
    pub(super) fn keys(defaults: &Self) -> Vec<String> {
        match serde_json::to_value(defaults) {
            Ok(serde_json::Value::Object(fields)) => fields.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }

    /// Reads `ASSENT_*` from the process environment.
    pub fn process_env(name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}
