//! Harness for Assent's end-to-end tests: a fresh PostgreSQL database per
//! test, the real server embedded on a random loopback port (or started as
//! a process), gRPC clients, a scriptable test device, and the paths of the
//! built binaries.

pub mod agent;
pub mod device;
pub mod fault_proxy;
pub mod haproxy;
pub mod harness;
pub mod in_process;
pub mod metrics;
pub mod pki;
pub mod ports;
pub mod raw_http2;
pub mod tap;
pub mod throwaway_pg;
pub mod tools;

pub use agent::{AgentProcess, EnrolledAgent};
pub use device::{DeviceStream, TestDevice};
pub use fault_proxy::FaultProxy;
pub use haproxy::Haproxy;
pub use harness::{
    RpClient, TestApp, TestDb, TestServer, binary, device, enrollment_code, rp_client,
    rp_client_at, transaction, until_disconnected,
};
pub use in_process::{InProcess, KeyDevice, seeded};
pub use tap::TcpTap;

/// A fresh directory under the system's temporary directory, named
/// `assent-PREFIX-` and 8 random characters (short: Unix socket paths
/// inside it are limited to about 100 bytes); removed with its contents when
/// dropped, so a test run leaves nothing behind.
pub fn scratch_dir(prefix: &str) -> ScratchDir {
    let dir = std::env::temp_dir().join(format!(
        "assent-{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    if let Err(error) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {error}", dir.display());
    }
    ScratchDir(dir)
}

/// A temporary directory that is removed when dropped (see [`scratch_dir`]).
#[derive(Debug)]
pub struct ScratchDir(std::path::PathBuf);

impl std::ops::Deref for ScratchDir {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for ScratchDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for ScratchDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether the server has closed `stream` within `wait` (a read sees the
/// end or an error; what it says first, an HTTP/2 GOAWAY, is skipped).
pub async fn is_closed(stream: &mut tokio::net::TcpStream, wait: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut byte = [0u8; 64];
    loop {
        match tokio::time::timeout(wait, stream.read(&mut byte)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// Kills a child process when the test ends, however it ends.
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to `secs` seconds for the future; panics with `what` otherwise.
pub async fn within<T>(secs: u64, what: &str, future: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(std::time::Duration::from_secs(secs), future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {secs} s waiting for {what}"),
    }
}

/// Runs each named `async fn(TestDb)` twice: on a fresh PostgreSQL database
/// (module `postgres`) and on a fresh SQLite file (module `sqlite`).
#[macro_export]
macro_rules! on_both_engines {
    ($($case:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::TestDb::create().await).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case($crate::TestDb::sqlite()).await;
                }
            )*
        }
    };
}
