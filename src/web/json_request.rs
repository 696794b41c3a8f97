//! Builds an RPC's request message from an HTTP request with the protobuf
//! JSON mapping: the JSON body read straight into the message, then the
//! path's variables and the query string, gathered into a JSON object of
//! their own, encoded after it. Protobuf reads concatenated encodings as
//! one message merged in order, so the parameters set their fields over the
//! body's. A mistake is an INVALID_ARGUMENT naming the field
//! (`consumer.name`, `messages[2].payload`, a query parameter) or the body.

use crate::error::GatewayError;
use prost::Message;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor};
use serde::Deserializer;
use serde_json::{Map, Value};

/// The message type a path variable or query value names a stream, topic or
/// group with: digits that fit a u32 are an id, anything else a name.
const RESOURCE_ID: &str = "iggy.gateway.v1.ResourceId";

/// An `Empty` field (a oneof choice such as `start.first`) is set by naming it.
const EMPTY: &str = "google.protobuf.Empty";

/// The JSON object of the path's `bound` variables and the `query`
/// parameters of an `input` message, set over `base` (an object, or none).
pub fn merge(
    input: &MessageDescriptor,
    base: Option<Map<String, Value>>,
    bound: Vec<(String, String)>,
    query: Option<&str>,
) -> Result<Map<String, Value>, GatewayError> {
    let mut object = base.unwrap_or_default();
    for (field, value) in bound {
        set(&mut object, input, &field, &value, &field)?;
    }
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        set(&mut object, input, &key, &value, &key)?;
    }
    Ok(object)
}

/// The JSON body's bytes as an `input` message, protobuf-encoded, read as
/// they are parsed (no JSON tree in between); no bytes are no fields.
pub fn body(input: MessageDescriptor, bytes: &[u8]) -> Result<Vec<u8>, GatewayError> {
    match bytes.iter().find(|byte| !byte.is_ascii_whitespace()) {
        None => return Ok(Vec::new()),
        Some(b'{') => {}
        Some(_) => {
            return Err(GatewayError::invalid(
                "body",
                format!("must be a JSON object, the {} message", input.name()),
            ));
        }
    }
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let message = deserialize(input, &mut json).and_then(|message| {
        json.end()
            .map(|()| message)
            .map_err(|error| (".".into(), error))
    });
    match message {
        Ok(message) => Ok(message.encode_to_vec()),
        Err((_, error)) if error.is_syntax() || error.is_eof() => Err(GatewayError::invalid(
            "body",
            format!("not valid JSON: {error}"),
        )),
        Err((path, error)) => Err(invalid_at(&path, error.to_string())),
    }
}

/// The JSON `object` as an `input` message, protobuf-encoded.
pub fn encode(
    input: MessageDescriptor,
    object: Map<String, Value>,
) -> Result<Vec<u8>, GatewayError> {
    match deserialize(input, Value::Object(object)) {
        Ok(message) => Ok(message.encode_to_vec()),
        Err((path, error)) => Err(invalid_at(&path, error.to_string())),
    }
}

/// Reads an `input` message from `json`; a failure comes with the path of
/// the field it was in (`.` for the message itself).
fn deserialize<'de, D: Deserializer<'de>>(
    input: MessageDescriptor,
    json: D,
) -> Result<DynamicMessage, (String, D::Error)> {
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(json, &mut track);
    DynamicMessage::deserialize(input, tracked).map_err(|error| (track.path().to_string(), error))
}

/// The error of a field that did not read at `path`, as `description` says.
fn invalid_at(path: &str, description: String) -> GatewayError {
    // An unknown key fails before the path reaches it: name it.
    let unknown = description
        .strip_prefix("unrecognized field name '")
        .and_then(|rest| rest.split_once('\''))
        .map(|(name, _)| name);
    let field = match (path, unknown) {
        (".", Some(name)) => name.to_owned(),
        (_, Some(name)) => format!("{path}.{name}"),
        (".", None) => "body".to_owned(),
        _ => path.to_owned(),
    };
    GatewayError::invalid(field, description)
}

/// Sets the field at the dotted `path` of `object` (a message of type
/// `message`) from the text `value`; `name` is what the client called it.
fn set(
    object: &mut Map<String, Value>,
    message: &MessageDescriptor,
    path: &str,
    value: &str,
    name: &str,
) -> Result<(), GatewayError> {
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    let field = message
        .get_field_by_name(head)
        .or_else(|| message.get_field_by_json_name(head))
        .ok_or_else(|| {
            GatewayError::invalid(name, format!("{} has no field {head:?}", message.name()))
        })?;
    // One spelling per field: the JSON name, whichever the body used.
    let key = field.json_name().to_owned();
    if let Some(other) = object.remove(field.name()) {
        object.entry(key.clone()).or_insert(other);
    }
    match rest {
        Some(rest) => match field.kind() {
            Kind::Message(child) if !field.is_list() && !field.is_map() => {
                let entry = object
                    .entry(key)
                    .or_insert_with(|| Value::Object(Map::new()));
                let Value::Object(child_object) = entry else {
                    return Err(GatewayError::invalid(name, "is set twice"));
                };
                set(child_object, &child, rest, value, name)
            }
            _ => Err(GatewayError::invalid(
                name,
                format!("{head:?} is not a message, so it has no fields"),
            )),
        },
        None => {
            let value = scalar(&field, value, name)?;
            if field.is_list() {
                match object
                    .entry(key)
                    .or_insert_with(|| Value::Array(Vec::new()))
                {
                    Value::Array(items) => items.push(value),
                    _ => return Err(GatewayError::invalid(name, "is set twice")),
                }
            } else {
                object.insert(key, value);
            }
            Ok(())
        }
    }
}

/// The JSON value the text `value` stands for in `field`.
fn scalar(field: &FieldDescriptor, value: &str, name: &str) -> Result<Value, GatewayError> {
    Ok(match field.kind() {
        Kind::Bool => match value {
            "" | "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(GatewayError::invalid(name, "must be true or false")),
        },
        Kind::Message(message) => match message.full_name() {
            RESOURCE_ID => resource_id(value),
            EMPTY => match value {
                "" | "true" => Value::Object(Map::new()),
                _ => {
                    return Err(GatewayError::invalid(
                        name,
                        "is a choice: name it with no value (or =true) to choose it",
                    ));
                }
            },
            // Well-known types with a JSON string form: Duration ("5s"),
            // Timestamp, wrappers.
            wkt if wkt.starts_with("google.protobuf.") => Value::String(value.to_owned()),
            _ => {
                return Err(GatewayError::invalid(
                    name,
                    format!(
                        "is a {} message: set its fields with dotted names ({name}.<field>)",
                        message.name()
                    ),
                ));
            }
        },
        // Numbers, enums (by name), strings and base64 bytes: the JSON
        // mapping reads each of them from a string.
        _ => Value::String(value.to_owned()),
    })
}

/// A ResourceId from a path segment or query value.
fn resource_id(value: &str) -> Value {
    let mut object = Map::new();
    match value.parse::<u32>() {
        Ok(id) if value.bytes().all(|byte| byte.is_ascii_digit()) => {
            object.insert("id".to_owned(), Value::from(id));
        }
        _ => {
            object.insert("name".to_owned(), Value::String(value.to_owned()));
        }
    }
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;
    use crate::web::descriptors;
    use serde_json::json;

    fn input(name: &str) -> MessageDescriptor {
        descriptors()
            .expect("descriptors")
            .get_message_by_name(&format!("iggy.gateway.v1.{name}"))
            .expect("a message")
    }

    fn bound(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(field, value)| ((*field).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn field_of(error: GatewayError) -> String {
        match error {
            GatewayError::InvalidArgument { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    /// The request `body`, `bound` and `query` make, as one message.
    fn request(
        name: &str,
        body: &[u8],
        bound: Vec<(String, String)>,
        query: Option<&str>,
    ) -> Result<Vec<u8>, GatewayError> {
        let mut bytes = super::body(input(name), body)?;
        bytes.extend(encode(
            input(name),
            merge(&input(name), None, bound, query)?,
        )?);
        Ok(bytes)
    }

    #[test]
    fn path_query_and_body_make_one_message() {
        let bytes = request(
            "PublishRequest",
            br#"{"message": {"payload": "aGk="}, "stream": {"id": 3}}"#,
            bound(&[("stream", "orders"), ("topic", "7")]),
            Some("idempotent=true&partitioning.partition_id=2"),
        )
        .expect("encoded");
        let request = proto::PublishRequest::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(
            request.stream.and_then(|s| s.kind),
            Some(proto::resource_id::Kind::Name("orders".into())),
            "the path's variable wins over the body"
        );
        assert_eq!(
            request.topic.and_then(|t| t.kind),
            Some(proto::resource_id::Kind::Id(7))
        );
        assert_eq!(request.message.expect("message").payload, b"hi".as_slice());
        assert!(request.idempotent);
        assert_eq!(
            request.partitioning.and_then(|p| p.kind),
            Some(proto::partitioning::Kind::PartitionId(2))
        );
    }

    #[test]
    fn query_values_take_their_fields_types() {
        let object = merge(
            &input("PollRequest"),
            None,
            bound(&[("stream", "s"), ("topic", "t")]),
            Some("consumer.name=c&start.first&ackMode=ACK_MODE_MANUAL&batchSize=5"),
        )
        .expect("merged");
        assert_eq!(
            Value::Object(object.clone()),
            json!({
                "stream": {"name": "s"},
                "topic": {"name": "t"},
                "consumer": {"name": "c"},
                "start": {"first": {}},
                "ackMode": "ACK_MODE_MANUAL",
                "batchSize": "5",
            })
        );
        let encoded = encode(input("PollRequest"), object).expect("encoded");
        let request = proto::PollRequest::decode(encoded.as_slice()).expect("decodes");
        assert_eq!(request.batch_size, 5);
        assert_eq!(request.ack_mode(), proto::AckMode::Manual);
    }

    #[test]
    fn a_query_value_sets_its_field_over_the_body() {
        let bytes = request(
            "PublishRequest",
            br#"{"idempotent": true, "message": {"id": "a", "payload": "aGk="}}"#,
            Vec::new(),
            Some("idempotent=false&message.id=b"),
        )
        .expect("encoded");
        let request = proto::PublishRequest::decode(bytes.as_slice()).expect("decodes");
        // Protobuf does not encode a false bool, so the body's true stands:
        // a query value can set a field, not clear one.
        assert!(request.idempotent);
        let message = request.message.expect("message");
        assert_eq!(message.id, "b");
        assert_eq!(
            message.payload,
            b"hi".as_slice(),
            "the rest of the body's message stays"
        );
    }

    #[test]
    fn mistakes_name_the_field() {
        let none = || Vec::new();
        let publish = |body: &[u8], query| request("PublishRequest", body, none(), query);
        let field = |result: Result<Vec<u8>, GatewayError>| field_of(result.expect_err("refused"));
        assert_eq!(
            field(publish(br#"{"message": {"payload": "not base64!"}}"#, None)),
            "message.payload"
        );
        assert_eq!(
            field(request(
                "PublishBatchRequest",
                br#"{"messages": [{}, {"message": {"headers": 3}}]}"#,
                none(),
                None
            )),
            "messages[1].message.headers"
        );
        assert_eq!(field(publish(b"", Some("colour=red"))), "colour");
        assert_eq!(field(publish(b"", Some("idempotent.x=1"))), "idempotent.x");
        assert_eq!(field(publish(b"", Some("message=x"))), "message");
        assert_eq!(field(publish(b"", Some("idempotent=yes"))), "idempotent");
        assert_eq!(field(publish(b"{nope", None)), "body");
        assert_eq!(field(publish(b"{} trailing", None)), "body");
        assert_eq!(field(publish(b"[1]", None)), "body");
        assert_eq!(field(publish(br#"{"colour": 1}"#, None)), "colour");
        assert_eq!(
            field(publish(br#"{"message": {"colour": 1}}"#, None)),
            "message.colour"
        );
    }

    #[test]
    fn digits_beyond_u32_are_a_name() {
        assert_eq!(resource_id("4294967295"), json!({"id": 4294967295u32}));
        assert_eq!(resource_id("4294967296"), json!({"name": "4294967296"}));
        assert_eq!(resource_id("+1"), json!({"name": "+1"}));
    }
}
