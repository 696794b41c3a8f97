//! `google.protobuf.Struct` payloads as JSON.

use crate::{error::GatewayError, validate::FieldPath};
use prost_types::{Struct, Value, value::Kind};
use serde_json::{Map, Number, Value as Json};

/// The JSON object for a Struct; numbers that JSON cannot hold (NaN,
/// infinities) are refused, naming the field.
pub fn from_struct(field: &FieldPath<'_>, value: &Struct) -> Result<Json, GatewayError> {
    let mut object = Map::new();
    for (key, item) in &value.fields {
        object.insert(key.clone(), from_value(&field.field(key), item)?);
    }
    Ok(Json::Object(object))
}

fn from_value(field: &FieldPath<'_>, value: &Value) -> Result<Json, GatewayError> {
    Ok(match &value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::NumberValue(number)) => Number::from_f64(*number)
            .map(Json::Number)
            .ok_or_else(|| GatewayError::invalid(field, "must be a finite number"))?,
        Some(Kind::StringValue(text)) => Json::String(text.clone()),
        Some(Kind::BoolValue(flag)) => Json::Bool(*flag),
        Some(Kind::StructValue(inner)) => from_struct(field, inner)?,
        Some(Kind::ListValue(list)) => Json::Array(
            list.values
                .iter()
                .enumerate()
                .map(|(index, item)| from_value(&field.index(index), item))
                .collect::<Result<_, _>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn value(kind: Kind) -> Value {
        Value { kind: Some(kind) }
    }

    #[test]
    fn nested_structs_become_json() {
        let inner = Struct {
            fields: BTreeMap::from([("n".to_owned(), value(Kind::NumberValue(2.5)))]),
        };
        let outer = Struct {
            fields: BTreeMap::from([
                ("inner".to_owned(), value(Kind::StructValue(inner))),
                ("ok".to_owned(), value(Kind::BoolValue(true))),
            ]),
        };
        let json = from_struct(&FieldPath::root("data"), &outer).expect("valid");
        assert_eq!(json, serde_json::json!({"inner": {"n": 2.5}, "ok": true}));
    }

    #[test]
    fn non_finite_numbers_name_the_field() {
        let bad = Struct {
            fields: BTreeMap::from([("x".to_owned(), value(Kind::NumberValue(f64::NAN)))]),
        };
        let error = from_struct(&FieldPath::root("event").field("data"), &bad).unwrap_err();
        assert!(
            matches!(error, GatewayError::InvalidArgument { ref field, .. } if field == "event.data.x")
        );
    }
}
