//! Loopback ports for servers a test starts itself (an OIDC or metrics
//! listener, a replica started later, a child process): ports that were
//! free just now and that nothing else in this machine takes by itself
//! meanwhile.
//!
//! A port from binding port 0 and letting go is an ephemeral one: between
//! the release and the server's own bind, any outgoing connection of a
//! parallel test (to PostgreSQL, to another test's server) may be given
//! the same port by the kernel, and the server fails with "address already
//! in use". These ports come from below the kernel's ephemeral range
//! (32768–60999 on Linux by default), which it never hands out by itself,
//! each one probed free and none handed out twice by one test process.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// The range the ports come from: below the ephemeral range, above the
/// well-known services.
const FIRST: u32 = 20_000;
const COUNT: u32 = 12_000;

/// How many ports this process has tried so far.
static TRIED: AtomicU32 = AtomicU32::new(0);

/// A loopback port free just now, outside the kernel's ephemeral range,
/// never returned before by this process.
pub fn free_port() -> u16 {
    // Processes start at different places (test binaries may overlap with
    // each other's children).
    let start = std::process::id().wrapping_mul(7_919) % COUNT;
    for _ in 0..COUNT {
        let n = TRIED.fetch_add(1, Ordering::Relaxed);
        let Ok(port) = u16::try_from(FIRST + (start + n) % COUNT) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + COUNT);
}

/// `127.0.0.1:`[`free_port`].
pub fn free_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_outside_the_ephemeral_range_and_never_repeat() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
        for port in ports {
            assert!((20_000..32_000).contains(&port), "{port}");
            assert!(
                TcpListener::bind(("127.0.0.1", port)).is_ok(),
                "{port} is free when handed out"
            );
        }
    }
}
