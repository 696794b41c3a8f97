//! Request ids (`x-request-id`) and W3C trace context (`traceparent`): what
//! a client may send, and what the gateway generates when it sends none.

use std::fmt;
use tonic::codegen::http::HeaderValue;
use uuid::Uuid;

/// The metadata key carrying the request id, in both directions.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The metadata key of W3C trace context.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// The longest request id accepted.
pub const MAX_REQUEST_ID_CHARS: usize = 128;

/// The id of one call: the client's, or a fresh UUIDv4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// The client's id when it sent a valid one, a generated one when it sent
    /// none, and an error saying what is wrong otherwise.
    pub fn from_header(value: Option<&HeaderValue>) -> Result<Self, String> {
        let Some(value) = value else {
            return Ok(Self::generate());
        };
        let text = value
            .to_str()
            .map_err(|_| "must be printable ASCII".to_owned())?;
        if text.is_empty() {
            return Ok(Self::generate());
        }
        if text.len() > MAX_REQUEST_ID_CHARS {
            return Err(format!(
                "is {} characters; the limit is {MAX_REQUEST_ID_CHARS}",
                text.len()
            ));
        }
        if !text.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
            return Err("must be printable ASCII".into());
        }
        Ok(Self(text.to_owned()))
    }

    /// A fresh UUIDv4 id.
    pub fn generate() -> Self {
        Self(Uuid::new_v4().hyphenated().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A valid W3C `traceparent` the client sent, kept to be stored on the
/// messages it publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traceparent(String);

impl Traceparent {
    /// The client's trace context when it is well formed
    /// (`version-traceid-parentid-flags`, lowercase hex); an invalid one is
    /// ignored, as the W3C recommendation says.
    pub fn from_header(value: Option<&HeaderValue>) -> Option<Self> {
        let text = value?.to_str().ok()?;
        let parts: Vec<&str> = text.split('-').collect();
        let [version, trace_id, parent_id, flags, ..] = parts.as_slice() else {
            return None;
        };
        let hex = |part: &str, len: usize| {
            part.len() == len
                && part
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        };
        let valid = hex(version, 2)
            && *version != "ff"
            && hex(trace_id, 32)
            && trace_id.chars().any(|c| c != '0')
            && hex(parent_id, 16)
            && parent_id.chars().any(|c| c != '0')
            && hex(flags, 2)
            && (*version != "00" || parts.len() == 4);
        valid.then(|| Self(text.to_owned()))
    }

    /// The header as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text: &str) -> HeaderValue {
        HeaderValue::from_str(text).expect("valid header value")
    }

    #[test]
    fn a_valid_client_id_is_kept_and_a_missing_one_generated() {
        let kept = RequestId::from_header(Some(&header("order-42 retry/1"))).expect("valid");
        assert_eq!(kept.as_str(), "order-42 retry/1");
        let generated = RequestId::from_header(None).expect("generated");
        assert!(Uuid::parse_str(generated.as_str()).is_ok());
        assert_ne!(generated, RequestId::generate());
    }

    #[test]
    fn overlong_or_unprintable_ids_are_refused() {
        let long = "a".repeat(MAX_REQUEST_ID_CHARS + 1);
        assert!(
            RequestId::from_header(Some(&header(&long)))
                .expect_err("too long")
                .contains("limit is 128")
        );
        assert!(RequestId::from_header(Some(&header(&"a".repeat(128)))).is_ok());
        let tab = HeaderValue::from_bytes(b"a\tb").expect("tab is a valid header byte");
        assert!(RequestId::from_header(Some(&tab)).is_err());
        let high = HeaderValue::from_bytes(&[b'a', 0xE9]).expect("opaque header byte");
        assert!(RequestId::from_header(Some(&high)).is_err());
    }

    #[test]
    fn only_well_formed_traceparents_are_kept() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            Traceparent::from_header(Some(&header(good))).map(|t| t.0),
            Some(good.to_owned())
        );
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(Traceparent::from_header(Some(&header(bad))), None, "{bad}");
        }
    }
}
