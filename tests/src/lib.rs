//! Harness for Assent's end-to-end tests: a fresh PostgreSQL database per
//! test, the real server embedded on a random loopback port (or started as
//! a process), gRPC clients, a scriptable test device, and the paths of the
//! built binaries.

pub mod device;
pub mod harness;

pub use device::{DeviceStream, TestDevice};
pub use harness::{RpClient, TestApp, TestDb, TestServer, binary, rp_client, rp_client_at};

/// Waits up to `secs` seconds for the future; panics with `what` otherwise.
pub async fn within<T>(secs: u64, what: &str, future: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(std::time::Duration::from_secs(secs), future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {secs} s waiting for {what}"),
    }
}
