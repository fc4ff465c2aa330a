//! The gRPC port's bounds as the configuration and the machine set them:
//! the connection caps, fitted to the open-file limit, and HTTP/2's.

use std::time::Duration;

use crate::config::ServerConfig;
use crate::grpc;

/// Concurrent HTTP/2 streams per connection.
const MAX_STREAMS_PER_CONNECTION: u32 = 128;

/// Descriptors kept for everything but client connections, beyond the
/// database pool: the listeners, the metrics port's clients, files, logs.
const DESCRIPTOR_RESERVE: u64 = 128;

/// The connection bounds, the cap fitted to the open-file limit (said in
/// the start log).
pub(super) fn connection_limits(config: &ServerConfig) -> grpc::connection::ConnectionLimits {
    let configured = grpc::connection::ConnectionLimits {
        max_connections: config.max_connections,
        max_per_peer: config.max_connections_per_peer,
        handshake_timeout: Duration::from_millis(config.handshake_timeout_ms),
        idle_timeout: Duration::from_secs(config.idle_timeout_seconds),
    };
    let Some(soft_limit) = grpc::connection::open_file_limit() else {
        tracing::warn!("cannot read the open-file limit; the connection cap is as configured");
        return configured;
    };
    let reserve = DESCRIPTOR_RESERVE + u64::from(config.max_db_connections);
    let limits = configured.within_open_files(soft_limit, reserve);
    tracing::info!(
        max_connections = limits.max_connections,
        configured = configured.max_connections,
        open_file_limit = soft_limit,
        reserve,
        "connection cap"
    );
    limits
}

/// HTTP/2 bounds of the gRPC port.
pub(super) fn http2_settings(config: &ServerConfig) -> grpc::transport::Http2Settings {
    grpc::transport::Http2Settings {
        max_streams: MAX_STREAMS_PER_CONNECTION,
        max_header_list_bytes: 16 * 1024,
        keepalive_interval: Duration::from_secs(20),
        keepalive_timeout: Duration::from_secs(10),
        // A request must arrive whole within the time its handler has.
        request_read_timeout: Duration::from_millis(config.request_timeout_ms),
    }
}
