//! The agent's one error enum: each variant names something the caller (a
//! person at a terminal or an embedding test) can act on.

use std::path::PathBuf;

/// Everything that can go wrong in the agent's library functions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No enrollment exists in the state directory.
    #[error("not enrolled: run `assent-agent enroll --code …` first (no enrollment in {})", state_dir.display())]
    NotEnrolled {
        /// The state directory that was searched.
        state_dir: PathBuf,
    },
    /// An enrollment exists and `--force` was not given.
    #[error("already enrolled in {}: pass --force to replace the existing enrollment", state_dir.display())]
    AlreadyEnrolled {
        /// The state directory holding the enrollment.
        state_dir: PathBuf,
    },
    /// The device name is empty or longer than 64 characters.
    #[error("invalid device name: {0}")]
    InvalidDeviceName(String),
    /// The `--policy` text is not `accept`, `deny`, `prompt` or `exec:CMD`.
    #[error("invalid policy {0:?}: expected accept, deny, prompt, desktop or exec:COMMAND")]
    InvalidPolicy(String),
    /// The server URL cannot be used.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidServerUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The server could not be reached (network, TLS, or no answer in time).
    #[error("server unreachable ({server}): {detail}")]
    ServerUnreachable {
        /// The server URL.
        server: String,
        /// What failed.
        detail: String,
    },
    /// The server refused the enrollment (bad or used code, invalid input).
    #[error("the server refused the enrollment: {message}")]
    EnrollmentRefused {
        /// The gRPC status code.
        code: tonic::Code,
        /// The server's message.
        message: String,
    },
    /// A file in the state directory could not be read or written.
    #[error("cannot access {}: {source}", path.display())]
    Storage {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A state file exists but its content is unusable.
    #[error("corrupt enrollment file {}: {detail}", path.display())]
    CorruptProfile {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The key store failed.
    #[error("the device's key store failed: {0}")]
    KeyStore(String),
    /// The server revoked this device: the daemon stops (retrying cannot help).
    #[error("the server revoked this device: {message}")]
    Revoked {
        /// The server's words.
        message: String,
    },
    /// The operating system's random source failed.
    #[error("cannot generate a device key: {0}")]
    Randomness(String),
    /// Another daemon already answers on the control socket.
    #[error("another assent-agent daemon is already running (socket {})", socket.display())]
    AlreadyRunning {
        /// The control socket path.
        socket: PathBuf,
    },
    /// Nothing listens on the control socket.
    #[error(
        "the agent daemon is not running: nothing answers on {} (start it with `assent-agent run`, \
         or pass the --state-dir it uses)",
        socket.display()
    )]
    DaemonNotRunning {
        /// The control socket path that was tried.
        socket: PathBuf,
    },
    /// The daemon did not report an outcome within the caller's timeout.
    #[error("timeout: no outcome within {seconds} s")]
    OtpTimeout {
        /// The timeout that elapsed, in seconds.
        seconds: u64,
    },
    /// The daemon broke the control protocol (closed early, sent garbage).
    #[error("unexpected answer from the agent daemon: {0}")]
    Control(String),
}
