//! The check the path-based layers cannot make: whether the caller may use
//! the stream a request names. Handlers call [`admit`] once the body is
//! decoded.

use super::{CallContext, Principal, StreamRef};
use crate::{error::GatewayError, proto};
use std::sync::Arc;
use tonic::Request;

/// A request that acts on one stream.
pub trait NamesStream {
    /// The stream as the request names it; `None` when it names none (or
    /// leaves the field out, which the handler then refuses as invalid).
    fn stream(&self) -> Option<StreamRef<'_>>;
}

/// The caller the auth layer identified. PERMISSION_DENIED when there is
/// none: the auth layer sets one on every non-open method, so a missing one
/// is a wiring fault, never a pass.
pub fn principal<T>(request: &Request<T>) -> Result<Arc<Principal>, GatewayError> {
    CallContext::of(request.extensions())
        .and_then(|context| context.principal())
        .cloned()
        .ok_or_else(|| GatewayError::PermissionDenied {
            reason: "NO_PRINCIPAL",
            message: "the call carries no identified principal".into(),
        })
}

/// The request's body when its caller may use the stream it names;
/// PERMISSION_DENIED otherwise, and when no principal was identified.
pub fn admit<T: NamesStream>(request: Request<T>) -> Result<T, GatewayError> {
    let principal = principal(&request)?;
    let body = request.into_inner();
    check_stream(&principal, body.stream())?;
    Ok(body)
}

/// PERMISSION_DENIED when `principal` may not use `stream`.
pub fn check_stream(
    principal: &Principal,
    stream: Option<StreamRef<'_>>,
) -> Result<(), GatewayError> {
    match stream {
        Some(stream) if !principal.may_use_stream(stream) => Err(GatewayError::PermissionDenied {
            reason: "STREAM_NOT_ALLOWED",
            message: format!(
                "{} may not use stream {}",
                principal.label(),
                match stream {
                    StreamRef::Name(name) => format!("`{name}`"),
                    StreamRef::Id(id) => format!("id {id}"),
                }
            ),
        }),
        _ => Ok(()),
    }
}

fn stream_ref(id: Option<&proto::ResourceId>) -> Option<StreamRef<'_>> {
    match id?.kind.as_ref()? {
        proto::resource_id::Kind::Name(name) => Some(StreamRef::Name(name)),
        proto::resource_id::Kind::Id(id) => Some(StreamRef::Id(*id)),
    }
}

macro_rules! names_stream_field {
    ($($request:ident),* $(,)?) => {$(
        impl NamesStream for proto::$request {
            fn stream(&self) -> Option<StreamRef<'_>> {
                stream_ref(self.stream.as_ref())
            }
        }
    )*};
}

macro_rules! names_no_stream {
    ($($request:ident),* $(,)?) => {$(
        impl NamesStream for proto::$request {
            fn stream(&self) -> Option<StreamRef<'_>> {
                None
            }
        }
    )*};
}

names_stream_field!(
    GetStreamRequest,
    UpdateStreamRequest,
    DeleteStreamRequest,
    PurgeStreamRequest,
    CreateTopicRequest,
    GetTopicRequest,
    ListTopicsRequest,
    UpdateTopicRequest,
    DeleteTopicRequest,
    PurgeTopicRequest,
    CreatePartitionsRequest,
    DeletePartitionsRequest,
    CreateConsumerGroupRequest,
    GetConsumerGroupRequest,
    ListConsumerGroupsRequest,
    DeleteConsumerGroupRequest,
    GetConsumerOffsetRequest,
    StoreConsumerOffsetRequest,
    DeleteConsumerOffsetRequest,
    PublishRequest,
    PublishBatchRequest,
    PublishEventRequest,
    PublishEventBatchRequest,
    SubscribeRequest,
    PollRequest,
    AckRequest,
);

// ListStreams is filtered to the allowed streams instead; stats and ping
// are about the server, not a stream.
names_no_stream!(ListStreamsRequest, GetStatsRequest, PingRequest);

impl NamesStream for proto::CreateStreamRequest {
    fn stream(&self) -> Option<StreamRef<'_>> {
        Some(StreamRef::Name(&self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::{Scope, principal::Identity};
    use tonic::Code;

    fn request_as<T>(body: T, streams: Option<Vec<String>>) -> Request<T> {
        let mut request = Request::new(body);
        let context = CallContext::new(
            std::time::Instant::now(),
            crate::edge::RequestId::generate(),
            None,
        );
        context.set_principal(Arc::new(Principal::new(
            Identity::Key("k".into()),
            vec![Scope::Publish],
            streams,
        )));
        request.extensions_mut().insert(Arc::new(context));
        request
    }

    fn publish_to(name: &str) -> proto::PublishRequest {
        proto::PublishRequest {
            stream: Some(proto::ResourceId {
                kind: Some(proto::resource_id::Kind::Name(name.into())),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_stream_outside_the_allow_list_is_denied() {
        let allowed = Some(vec!["orders".to_owned()]);
        assert!(admit(request_as(publish_to("orders"), allowed.clone())).is_ok());
        let denied = admit(request_as(publish_to("payments"), allowed))
            .expect_err("not on the list")
            .into_status();
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(
            denied.message().contains("`payments`"),
            "{}",
            denied.message()
        );
        assert!(admit(request_as(publish_to("payments"), None)).is_ok());
    }

    #[test]
    fn creating_a_stream_checks_its_name() {
        let create = proto::CreateStreamRequest {
            name: "payments".into(),
        };
        assert!(admit(request_as(create, Some(vec!["orders".into()]))).is_err());
    }

    #[test]
    fn a_request_without_principal_is_denied() {
        let error = admit(Request::new(publish_to("orders"))).expect_err("no principal");
        assert_eq!(error.reason(), "NO_PRINCIPAL");
    }
}
