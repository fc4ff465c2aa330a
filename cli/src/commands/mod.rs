//! One module per top-level subcommand: its clap arguments and the `run`
//! function that calls the server and prints the result.

pub mod devices;
pub mod enrollment;
pub mod events;
pub mod login;
pub mod tx;

/// Parses a transaction id on the command line: a UUID, so a
/// mistyped one is a usage error (exit 2) before anything is sent.
pub fn parse_id(text: &str) -> Result<String, String> {
    uuid::Uuid::parse_str(text.trim())
        .map(|id| id.hyphenated().to_string())
        .map_err(|_| format!("{text:?} is not an id (expected a UUID such as 0f8fad5b-d9cb-469f-a165-70867728950e)"))
}
