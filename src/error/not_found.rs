//! The Iggy errors for resources a lookup did not find, so that a `Get` of a
//! missing resource answers with the same reason as any other call naming it.

use iggy::prelude::{IdKind, Identifier, IggyError};

fn is_named(id: &Identifier) -> bool {
    id.kind == IdKind::String
}

/// Stream not found, by id or by name.
pub fn stream(stream: &Identifier) -> IggyError {
    if is_named(stream) {
        IggyError::StreamNameNotFound(stream.as_string())
    } else {
        IggyError::StreamIdNotFound(stream.clone())
    }
}

/// Topic not found, by id or by name.
pub fn topic(stream: &Identifier, topic: &Identifier) -> IggyError {
    if is_named(topic) {
        IggyError::TopicNameNotFound(topic.as_string(), stream.as_string())
    } else {
        IggyError::TopicIdNotFound(topic.clone(), stream.clone())
    }
}

/// Consumer group not found, by id or by name.
pub fn consumer_group(topic: &Identifier, group: &Identifier) -> IggyError {
    if is_named(group) {
        IggyError::ConsumerGroupNameNotFound(group.as_string(), topic.clone())
    } else {
        IggyError::ConsumerGroupIdNotFound(group.clone(), topic.clone())
    }
}
