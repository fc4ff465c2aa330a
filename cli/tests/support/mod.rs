//! Running the `assent` binary from the black-box tests and reading what it
//! printed.

use std::process::Output;

use serde_json::Value;

use crate::fake_server::API_KEY;

/// Runs `assent` with `args`, isolated from the caller's ASSENT_* variables.
pub async fn assent(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_assent"))
        .args(args)
        .env_remove("ASSENT_SERVER")
        .env_remove("ASSENT_API_KEY")
        .env_remove("ASSENT_CA_CERT")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

/// Runs `assent --server URL --api-key KEY args…`.
pub async fn assent_at(url: &str, args: &[&str]) -> Output {
    let mut full = vec!["--server", url, "--api-key", API_KEY];
    full.extend_from_slice(args);
    assent(&full).await
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Standard output parsed as exactly one JSON document.
pub fn json_stdout(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {}", stdout(output)))
}
