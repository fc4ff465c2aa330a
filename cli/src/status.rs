//! The one table that turns gRPC statuses and connection failures into
//! messages a person can act on.

use std::error::Error;

use tonic::{Code, Status};

/// Describes a failed call to the server at `server`.
pub fn describe(status: &Status, server: &str) -> String {
    let message = status.message();
    match status.code() {
        Code::Unavailable => unreachable(
            server,
            &assent_proto::report::with_causes(message, status.source()),
        ),
        Code::Unauthenticated if message.contains("app create") => {
            // The server already says where keys come from.
            format!("the API key was refused: {message} (set ASSENT_API_KEY or --api-key)")
        }
        Code::Unauthenticated => format!(
            "the API key was refused: {message}; set ASSENT_API_KEY (or --api-key) to a key \
             printed by `assent-server app create` or `app key create`"
        ),
        Code::Unimplemented | Code::Unknown if message.contains("grpc-status header missing") => {
            not_grpc(server, message)
        }
        Code::NotFound => format!("not found: {message}"),
        Code::InvalidArgument => format!("invalid input: {message}"),
        Code::ResourceExhausted => format!("rate limited: {message}"),
        Code::DeadlineExceeded => format!(
            "{}: the server at {server} did not answer in time: {message}",
            code_name(Code::DeadlineExceeded)
        ),
        code => format!("{}: {message}", code_name(code)),
    }
}

/// Describes a failure to open the connection to `server`.
pub fn describe_connect_error(error: &tonic::transport::Error, server: &str) -> String {
    unreachable(
        server,
        &assent_proto::report::with_causes(&error.to_string(), error.source()),
    )
}

/// The wording of every "server not reachable" failure.
fn unreachable(server: &str, detail: &str) -> String {
    format!("cannot reach the Assent server at {server}: {detail} (is `assent-server` running?)")
}

/// The wording for an HTTP server that is not Assent's gRPC port (the
/// metrics port, a web server, a proxy's error page).
fn not_grpc(server: &str, message: &str) -> String {
    let http = message
        .rsplit("HTTP status code ")
        .next()
        .filter(|code| code.chars().all(|c| c.is_ascii_digit()))
        .map_or_else(String::new, |code| format!(" (it answered HTTP {code})"));
    format!(
        "{server} is not an Assent gRPC port{http}: is it the metrics port? Point --server \
         (ASSENT_SERVER) at the address assent-server logs as \"listening\" (default \
         127.0.0.1:50051)"
    )
}

/// The gRPC name of a status code (`FAILED_PRECONDITION`, …).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "http://127.0.0.1:50051";

    #[test]
    fn unavailable_names_the_server_and_suggests_starting_it() {
        let text = describe(&Status::unavailable("connection refused"), SERVER);
        assert_eq!(
            text,
            "cannot reach the Assent server at http://127.0.0.1:50051: connection refused \
             (is `assent-server` running?)"
        );
    }

    #[test]
    fn a_key_refusal_names_where_keys_come_from_once() {
        let server_says = "the API key is not valid (unknown, revoked or mistyped); use a key \
                           printed by `assent-server app create` or `app key create`";
        let text = describe(&Status::unauthenticated(server_says), SERVER);
        assert_eq!(text.matches("app create").count(), 1, "{text}");
        assert!(text.contains("ASSENT_API_KEY"), "{text}");
    }

    #[test]
    fn a_port_that_is_not_grpc_is_named_as_such() {
        let status =
            Status::unimplemented("grpc-status header missing, mapped from HTTP status code 404");
        let text = describe(&status, "http://127.0.0.1:9090");
        assert_eq!(
            text,
            "http://127.0.0.1:9090 is not an Assent gRPC port (it answered HTTP 404): is it the \
             metrics port? Point --server (ASSENT_SERVER) at the address assent-server logs as \
             \"listening\" (default 127.0.0.1:50051)"
        );
    }

    #[test]
    fn known_codes_get_words() {
        let cases = [
            (
                Status::unauthenticated("bad key"),
                "the API key was refused: bad key; set ASSENT_API_KEY (or --api-key) to a key \
                 printed by `assent-server app create` or `app key create`",
            ),
            (
                Status::not_found("no such transaction"),
                "not found: no such transaction",
            ),
            (
                Status::invalid_argument("message too long"),
                "invalid input: message too long",
            ),
            (
                Status::resource_exhausted("retry in 3 s"),
                "rate limited: retry in 3 s",
            ),
        ];
        for (status, expected) in cases {
            assert_eq!(describe(&status, SERVER), expected);
        }
    }

    #[test]
    fn other_codes_show_their_name_and_message() {
        let text = describe(&Status::out_of_range("cursor too old"), SERVER);
        assert_eq!(text, "OUT_OF_RANGE: cursor too old");
        let text = describe(&Status::failed_precondition("already ended"), SERVER);
        assert_eq!(text, "FAILED_PRECONDITION: already ended");
    }

    #[test]
    fn empty_unavailable_message_still_reads_well() {
        let text = describe(&Status::unavailable(""), SERVER);
        assert!(
            text.contains("at http://127.0.0.1:50051: no details given"),
            "{text}"
        );
    }
}
