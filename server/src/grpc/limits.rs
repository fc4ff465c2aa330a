//! Size limits on the wire. tonic reports a request over the decoding limit
//! as OUT_OF_RANGE; gRPC documents RESOURCE_EXHAUSTED for exceeded size
//! limits, so unary responses carrying that failure are rewritten.

use tonic::codegen::http::{self, HeaderValue};

/// Largest gRPC message accepted or sent on any service (SPEC §6).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Rewrites tonic's "message too large" status to RESOURCE_EXHAUSTED.
pub fn oversized_to_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let is_out_of_range = headers.get("grpc-status").is_some_and(|v| v == "11");
    let is_too_large = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| m.contains("too%20large") || m.contains("too large"));
    if is_out_of_range && is_too_large {
        headers.insert("grpc-status", HeaderValue::from_static("8"));
        // grpc-message is percent-encoded on the wire.
        headers.insert(
            "grpc-message",
            HeaderValue::from_static(
                "the%20request%20is%20larger%20than%20the%2064%20KiB%20message%20limit",
            ),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: &'static str, message: &'static str) -> http::Response<()> {
        let mut response = http::Response::new(());
        response
            .headers_mut()
            .insert("grpc-status", HeaderValue::from_static(status));
        response
            .headers_mut()
            .insert("grpc-message", HeaderValue::from_static(message));
        response
    }

    #[test]
    fn oversized_requests_become_resource_exhausted() {
        let rewritten = oversized_to_resource_exhausted(response(
            "11",
            "Error,%20decoded%20message%20length%20too%20large",
        ));
        assert_eq!(rewritten.headers()["grpc-status"], "8");
    }

    #[test]
    fn other_out_of_range_errors_are_left_alone() {
        let kept = oversized_to_resource_exhausted(response("11", "cursor%20purged"));
        assert_eq!(kept.headers()["grpc-status"], "11");
    }
}
