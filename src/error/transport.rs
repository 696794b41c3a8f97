//! What a status made below the gateway's own code means, so that it reaches
//! the client with a reason like every other error.
//!
//! tonic answers some requests before any handler runs (a body that is cut
//! short, one over the size limit, an unsupported `grpc-encoding`, a path no
//! service serves) with a bare code and message. [`explain`] turns such a
//! status into the [`GatewayError`] it stands for, matched on tonic's own
//! wording (pinned by the tests below and the end-to-end refusal table).

use super::GatewayError;
use crate::metrics::code_name;
use tonic::{Code, Status};

/// The gateway error that `status`, sent without details for the call to
/// `path`, stands for; `max_request_bytes` is the limit tonic enforced.
pub fn explain(status: &Status, path: &str, max_request_bytes: usize) -> GatewayError {
    let message = status.message();
    match status.code() {
        Code::Unimplemented if message.is_empty() => GatewayError::UnknownMethod(path.to_owned()),
        Code::Unimplemented if message.starts_with("Content is compressed with") => {
            GatewayError::UnsupportedEncoding(message.to_owned())
        }
        Code::OutOfRange if message.starts_with("Error, decoded message length too large") => {
            GatewayError::RequestTooLarge {
                limit: max_request_bytes,
            }
        }
        // A body that ends inside a message or holds none, or one another service's codec
        // (health, reflection) could not decode: the client's fault.
        Code::Internal
            if message.starts_with("Unexpected EOF")
                || message.starts_with("Missing request message")
                || message.starts_with("failed to decode Protobuf message") =>
        {
            GatewayError::MalformedRequest(message.to_owned())
        }
        // The gRPC spec asks for INTERNAL here; the reason says why.
        Code::Internal if message.starts_with("protocol error: received message with") => {
            GatewayError::Transport {
                code: Code::Internal,
                reason: "INVALID_COMPRESSION_FLAG",
                message: message.to_owned(),
            }
        }
        code => GatewayError::Transport {
            code,
            reason: code_name(code),
            message: message.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonics_refusals_get_their_reasons() {
        let cases = [
            (
                Status::unimplemented(""),
                "UNKNOWN_METHOD",
                Code::Unimplemented,
            ),
            (
                Status::unimplemented("Content is compressed with `gzip` which isn't supported"),
                "UNSUPPORTED_ENCODING",
                Code::Unimplemented,
            ),
            (
                Status::out_of_range(
                    "Error, decoded message length too large: found 9 bytes, the limit is: 8 bytes",
                ),
                "REQUEST_TOO_LARGE",
                Code::OutOfRange,
            ),
            (
                Status::internal("Unexpected EOF decoding stream."),
                "MALFORMED_REQUEST",
                Code::InvalidArgument,
            ),
            (
                Status::internal("Missing request message."),
                "MALFORMED_REQUEST",
                Code::InvalidArgument,
            ),
            (
                Status::internal("failed to decode Protobuf message: buffer underflow"),
                "MALFORMED_REQUEST",
                Code::InvalidArgument,
            ),
            (
                Status::internal(
                    "protocol error: received message with compressed-flag but no grpc-encoding was specified",
                ),
                "INVALID_COMPRESSION_FLAG",
                Code::Internal,
            ),
            (Status::cancelled("gone"), "CANCELLED", Code::Cancelled),
        ];
        for (status, reason, code) in cases {
            let error = explain(&status, "/a.B/C", 8);
            assert_eq!(error.reason(), reason, "{status:?}");
            assert_eq!(error.code(), code, "{status:?}");
        }
    }

    #[test]
    fn an_unknown_method_is_named_and_a_size_refusal_gives_the_limit() {
        let unknown = explain(&Status::unimplemented(""), "/a.B/C", 8).into_status();
        assert!(unknown.message().contains("/a.B/C"), "{unknown:?}");
        let status = Status::out_of_range("Error, decoded message length too large: found 9");
        let too_large = explain(&status, "/a.B/C", 8).into_status();
        use tonic_types::StatusExt;
        let details = too_large.get_error_details();
        let info = details.error_info().expect("error info");
        assert_eq!(
            info.metadata.get("limit_bytes").map(String::as_str),
            Some("8")
        );
    }
}
