//! Why the server could not start, or stopped with an error.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::first_run;
use crate::store::StoreError;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another process already serves this SQLite file.
    #[error(
        "another assent-server already serves {0}; the embedded SQLite engine is \
         single-process: stop the other one, pick another --data-dir, or run several \
         replicas on PostgreSQL (ASSENT_DATABASE_URL=postgres://…)"
    )]
    AlreadyRunning(PathBuf),
    /// The data directory could not be prepared.
    #[error("cannot prepare the data directory {path}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// First-run setup failed.
    #[error(transparent)]
    FirstRun(#[from] first_run::FirstRunError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Plaintext on a non-loopback address was not explicitly allowed.
    #[error(
        "refusing to serve plaintext gRPC on {0} (not loopback): set ASSENT_TLS_CERT and \
         ASSENT_TLS_KEY (--tls-cert/--tls-key), listen on 127.0.0.1, or pass \
         --insecure-plaintext (ASSENT_INSECURE_PLAINTEXT=true) when a proxy terminates TLS \
         on a private network"
    )]
    InsecureListen(SocketAddr),
    /// TLS material could not be loaded.
    #[error("cannot load TLS certificate or key: {0}")]
    Tls(String),
    /// The CIBA provider could not start (its signing key).
    #[error("cannot start the CIBA provider: {0}")]
    Oidc(String),
    /// I/O failure.
    #[error("I/O error")]
    Io(#[from] std::io::Error),
    /// The reflection descriptor is broken (a build bug).
    #[error("reflection setup failed: {0}")]
    Reflection(String),
}
