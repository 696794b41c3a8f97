//! Builds an RPC's request message from an HTTP request: the path's
//! variables, the query string and the JSON body, merged into one JSON
//! object and read with the protobuf JSON mapping. A mistake is an
//! INVALID_ARGUMENT naming the field (`consumer.name`, `messages[2].payload`,
//! a query parameter) or the body.

use crate::error::GatewayError;
use bytes::Bytes;
use prost::Message;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value};

/// The message type a path variable or query value names a stream, topic or
/// group with: digits that fit a u32 are an id, anything else a name.
const RESOURCE_ID: &str = "iggy.gateway.v1.ResourceId";

/// An `Empty` field (a oneof choice such as `start.first`) is set by naming it.
const EMPTY: &str = "google.protobuf.Empty";

/// The request message's JSON object: the `body` (an object, or nothing)
/// with the path's `bound` variables and the `query` parameters set on it.
pub fn merge(
    input: &MessageDescriptor,
    body: Option<Value>,
    bound: Vec<(String, String)>,
    query: Option<&str>,
) -> Result<Value, GatewayError> {
    let mut object = match body {
        None => Map::new(),
        Some(Value::Object(object)) => object,
        Some(_) => {
            return Err(GatewayError::invalid(
                "body",
                format!("must be a JSON object, the {} message", input.name()),
            ));
        }
    };
    for (field, value) in bound {
        set(&mut object, input, &field, &value, &field)?;
    }
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        set(&mut object, input, &key, &value, &key)?;
    }
    Ok(Value::Object(object))
}

/// Reads the body's bytes as JSON; no bytes are an empty object.
pub fn parse_body(bytes: &[u8]) -> Result<Option<Value>, GatewayError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|error| GatewayError::invalid("body", format!("not valid JSON: {error}")))
}

/// The JSON `object` as an `input` message, protobuf-encoded.
pub fn encode(input: MessageDescriptor, object: Value) -> Result<Bytes, GatewayError> {
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(object, &mut track);
    match DynamicMessage::deserialize(input, deserializer) {
        Ok(message) => Ok(message.encode_to_vec().into()),
        Err(error) => {
            let path = track.path().to_string();
            let description = error.to_string();
            // An unknown key fails before the path reaches it: name it.
            let unknown = description
                .strip_prefix("unrecognized field name '")
                .and_then(|rest| rest.split_once('\''))
                .map(|(name, _)| name);
            let field = match (path.as_str(), unknown) {
                (".", Some(name)) => name.to_owned(),
                (_, Some(name)) => format!("{path}.{name}"),
                (".", None) => "body".to_owned(),
                _ => path,
            };
            Err(GatewayError::invalid(field, description))
        }
    }
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

    #[test]
    fn path_query_and_body_make_one_message() {
        let object = merge(
            &input("PublishRequest"),
            parse_body(br#"{"message": {"payload": "aGk="}}"#).expect("json"),
            bound(&[("stream", "orders"), ("topic", "7")]),
            Some("idempotent=true&partitioning.partition_id=2"),
        )
        .expect("merged");
        let bytes = encode(input("PublishRequest"), object).expect("encoded");
        let request = proto::PublishRequest::decode(bytes).expect("decodes");
        assert_eq!(
            request.stream.and_then(|s| s.kind),
            Some(proto::resource_id::Kind::Name("orders".into()))
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
            object,
            json!({
                "stream": {"name": "s"},
                "topic": {"name": "t"},
                "consumer": {"name": "c"},
                "start": {"first": {}},
                "ackMode": "ACK_MODE_MANUAL",
                "batchSize": "5",
            })
        );
        let request =
            proto::PollRequest::decode(encode(input("PollRequest"), object).expect("encoded"))
                .expect("decodes");
        assert_eq!(request.batch_size, 5);
        assert_eq!(request.ack_mode(), proto::AckMode::Manual);
    }

    #[test]
    fn a_body_field_spelled_either_way_is_one_field() {
        let object = merge(
            &input("PublishRequest"),
            parse_body(br#"{"idempotent": false}"#).expect("json"),
            Vec::new(),
            Some("idempotent=true"),
        )
        .expect("merged");
        assert_eq!(object, json!({"idempotent": true}));
    }

    #[test]
    fn mistakes_name_the_field() {
        let publish = input("PublishRequest");
        let body = parse_body(br#"{"message": {"payload": "not base64!"}}"#).expect("json");
        let object = merge(&publish, body, Vec::new(), None).expect("merged");
        assert_eq!(
            field_of(encode(publish.clone(), object).expect_err("bad base64")),
            "message.payload"
        );

        let batch = input("PublishBatchRequest");
        let body = parse_body(br#"{"messages": [{}, {"message": {"headers": 3}}]}"#).expect("json");
        let object = merge(&batch, body, Vec::new(), None).expect("merged");
        assert_eq!(
            field_of(encode(batch, object).expect_err("bad headers")),
            "messages[1].message.headers"
        );

        let unknown = merge(&publish, None, Vec::new(), Some("colour=red"));
        assert_eq!(field_of(unknown.expect_err("unknown")), "colour");
        let not_message = merge(&publish, None, Vec::new(), Some("idempotent.x=1"));
        assert_eq!(field_of(not_message.expect_err("scalar")), "idempotent.x");
        let whole_message = merge(&publish, None, Vec::new(), Some("message=x"));
        assert_eq!(field_of(whole_message.expect_err("message")), "message");
        let not_bool = merge(&publish, None, Vec::new(), Some("idempotent=yes"));
        assert_eq!(field_of(not_bool.expect_err("bool")), "idempotent");
        assert_eq!(
            field_of(parse_body(b"{nope").expect_err("not json")),
            "body"
        );
        let array = merge(&publish, Some(json!([1])), Vec::new(), None);
        assert_eq!(field_of(array.expect_err("array")), "body");
        let unknown_body =
            merge(&publish, Some(json!({"colour": 1})), Vec::new(), None).expect("merged");
        assert_eq!(
            field_of(encode(publish, unknown_body).expect_err("unknown field")),
            "colour"
        );
    }

    #[test]
    fn digits_beyond_u32_are_a_name() {
        assert_eq!(resource_id("4294967295"), json!({"id": 4294967295u32}));
        assert_eq!(resource_id("4294967296"), json!({"name": "4294967296"}));
        assert_eq!(resource_id("+1"), json!({"name": "+1"}));
    }
}
