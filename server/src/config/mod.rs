//! Typed settings, layered: built-in defaults → TOML file → `ASSENT_*`
//! environment → command-line flags (applied by `main`). `Debug` redacts the
//! database URL, which may carry a password.
//!
//! [`ServerConfig`] declares every setting with its default
//! (`settings.rs`); `load.rs` layers the sources and names a bad one;
//! `derived.rs` turns the settings into what the parts of the server take
//! (the engine, the pool's and the use cases' limits).

mod derived;
mod load;
mod settings;
#[cfg(test)]
mod tests;

pub use derived::{Engine, SQLITE_FILE};
pub use load::ConfigError;
pub use settings::{LogFormat, ServerConfig};
