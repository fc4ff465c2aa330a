//! Telling the service manager how the daemon is doing, systemd's
//! `sd_notify` protocol: datagrams to `$NOTIFY_SOCKET` (a path, or `@name`
//! in the abstract namespace). `READY=1` once the control socket listens,
//! `WATCHDOG=1` every half `$WATCHDOG_USEC` while the device answers,
//! `STOPPING=1` at shutdown. Without `$NOTIFY_SOCKET` nothing is sent.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Where notifications go, read from the environment once.
#[derive(Debug, Default)]
pub(crate) struct ServiceManager {
    /// The socket and its address; `None` when not run by a service manager.
    target: Option<(UnixDatagram, SocketAddr)>,
    /// How often to ping the watchdog; `None` when it is off.
    watchdog: Option<Duration>,
}

impl ServiceManager {
    /// From `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID` (the
    /// watchdog is this process's only when the pid is absent or ours).
    pub(crate) fn from_env() -> Self {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let opened = address(path.as_encoded_bytes()).and_then(|address| {
                let socket = UnixDatagram::unbound()?;
                // Never stall the daemon on a full queue: a lost ping is logged.
                socket.set_nonblocking(true)?;
                Ok((socket, address))
            });
            opened
                .inspect_err(|error| tracing::warn!(%error, "cannot use NOTIFY_SOCKET"))
                .ok()
        });
        let is_ours = std::env::var("WATCHDOG_PID")
            .map_or(true, |pid| pid.trim() == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|&usec| usec > 0 && is_ours)
            .map(|usec| Duration::from_micros(usec) / 2);
        Self { target, watchdog }
    }

    /// Sends `state` (`READY=1`, …); a failure is logged, never fatal.
    pub(crate) fn notify(&self, state: &str) {
        let Some((socket, address)) = &self.target else {
            return;
        };
        if let Err(error) = socket.send_to_addr(state.as_bytes(), address) {
            tracing::warn!(%error, state, "cannot notify the service manager");
        }
    }

    /// How often the watchdog wants a ping (half its timeout), if it is on
    /// and there is someone to ping.
    pub(crate) fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.target.is_some())
    }
}

/// The socket address named by `$NOTIFY_SOCKET`.
fn address(path: &[u8]) -> std::io::Result<SocketAddr> {
    match path.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            SocketAddr::from_abstract_name(name)
        }
        None => {
            use std::os::unix::ffi::OsStrExt as _;
            SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(path))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_socket_receives_the_states() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let receiver = UnixDatagram::bind(&path).unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let manager = ServiceManager {
            target: Some((
                UnixDatagram::unbound().unwrap(),
                address(path.as_os_str().as_encoded_bytes()).unwrap(),
            )),
            watchdog: Some(Duration::from_secs(15)),
        };
        manager.notify("READY=1");
        let mut buffer = [0u8; 64];
        let read = receiver.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..read], b"READY=1");
        assert_eq!(manager.watchdog_interval(), Some(Duration::from_secs(15)));
    }

    #[test]
    fn abstract_names_are_addressed_as_such() {
        let address = address(b"@assent/test").unwrap();
        use std::os::linux::net::SocketAddrExt as _;
        assert_eq!(address.as_abstract_name(), Some(&b"assent/test"[..]));
        assert!(address.as_pathname().is_none());
    }

    #[test]
    fn without_a_manager_nothing_is_sent_and_no_watchdog_runs() {
        let manager = ServiceManager {
            target: None,
            watchdog: Some(Duration::from_secs(1)),
        };
        manager.notify("READY=1");
        assert_eq!(manager.watchdog_interval(), None);
    }
}
