//! What the clients (the `assent` CLI and the device agent) trust for an
//! `https://` server when no CA file is given: the system's CA bundle.

use std::path::Path;

/// CA bundles tried, in order (Debian/Ubuntu, Fedora/RHEL, macOS/BSD).
pub const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The first system CA bundle that exists.
pub fn system_ca_bundle<'a>() -> Option<&'a Path> {
    SYSTEM_CA_BUNDLES
        .iter()
        .map(Path::new)
        .find(|path| path.is_file())
}
