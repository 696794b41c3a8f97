//! Streams that HTTP/2 refuses before gRPC sees them, logged and counted.
//!
//! h2 resets a stream whose headers it cannot accept (a malformed
//! `:authority` such as grpcio's `host1:port1,host2:port2` for a
//! multi-address target, a missing `:scheme` or `:path`, conflicting
//! `content-length`, a header block over the limit) without handing it to
//! the server: no layer, no call line, no metric would ever know. h2 says
//! why only in a `debug` event of its own; this tracing layer takes those
//! events, counts each as `iggy_grpc_http2_refused_streams_total` and writes
//! one warning naming the reason.
//!
//! The binary installs it. A library user who wants the same adds
//! [`layer`] to their subscriber.

use crate::metrics;
use tracing::{Event, Level, Subscriber, field::Field, warn};
use tracing_subscriber::{
    Layer,
    filter::{Filtered, Targets},
    layer::Context,
};

/// The h2 modules whose `debug` events report a refused stream. Only these
/// are enabled at `debug`: h2's per-frame events live elsewhere
/// (`h2::codec`) and stay off.
const H2_TARGETS: [&str; 2] = ["h2::server", "h2::proto::streams"];

/// How h2 starts the messages of a stream it refuses.
const REFUSAL_PREFIXES: [&str; 2] = ["malformed headers", "stream error"];

/// The tracing layer that logs and counts streams refused by HTTP/2.
pub fn layer<S>() -> Filtered<Http2Refusals, Targets, S>
where
    S: Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let targets = H2_TARGETS.iter().fold(Targets::new(), |targets, target| {
        targets.with_target(*target, Level::DEBUG)
    });
    Http2Refusals.with_filter(targets)
}

/// Turns h2's `debug` reports of refused streams into a count and a warning.
#[derive(Debug, Clone, Copy, Default)]
pub struct Http2Refusals;

impl<S: Subscriber> Layer<S> for Http2Refusals {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let mut message = Message::default();
        event.record(&mut message);
        if is_refusal(&message.0) {
            metrics::count_http2_refused_stream();
            warn!(
                reason = %message.0,
                "HTTP/2 refused a stream before it reached gRPC"
            );
        }
    }
}

/// Whether an h2 message reports a refused stream.
fn is_refusal(message: &str) -> bool {
    REFUSAL_PREFIXES
        .iter()
        .any(|prefix| message.starts_with(prefix))
}

/// An event's `message` field as text.
#[derive(Default)]
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.0);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_told_from_other_h2_reports() {
        assert!(is_refusal(
            "malformed headers: malformed authority (\"a:1,b:2\"): invalid uri character"
        ));
        assert!(is_refusal(
            "stream error PROTOCOL_ERROR -- conflicting content-length headers; stream=1"
        ));
        assert!(!is_refusal("received settings ACK; applying Settings"));
    }
}
