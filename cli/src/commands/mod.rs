//! One module per top-level subcommand: its clap arguments and the `run`
//! function that calls the server and prints the result.

pub mod devices;
pub mod enrollment;
pub mod events;
pub mod login;
pub mod tx;
