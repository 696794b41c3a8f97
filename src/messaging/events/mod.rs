//! Typed domain events: an `Event` envelope with a user, order or free-form
//! payload, stored in Iggy as a CloudEvents-shaped JSON document with
//! `content-type` and `event-type` headers, so consumers in any language can
//! read it. The default partition key is the aggregate id (user or order id),
//! keeping one aggregate's events in order.

mod json;
mod money;

use super::publish::{Outgoing, PublishLimits, Route, Stamp, message_id};
use crate::validate;
use crate::{
    error::GatewayError,
    messaging::headers::MAX_HEADER_FIELD_BYTES,
    proto::{self, event::Payload, order_event, user_event},
    validate::FieldPath,
};
use bytes::Bytes;
use iggy::prelude::{HeaderKey, HeaderValue};
use serde_json::{Value as Json, json};
use std::{collections::BTreeMap, time::SystemTime};

/// The `content-type` header of every stored event.
pub const CONTENT_TYPE: &str = "application/json";

/// An event ready to publish, and the route it takes when the request names
/// none.
pub struct EventMessage {
    pub outgoing: Outgoing,
    pub default_route: Route,
}

/// Validates the event at `field` and builds its message.
pub fn build(
    field: &FieldPath<'_>,
    event: Option<proto::Event>,
    limits: &PublishLimits,
    stamp: Stamp<'_>,
) -> Result<EventMessage, GatewayError> {
    let event = event.ok_or_else(|| GatewayError::invalid(field, "is required"))?;
    let id = message_id(&field.field("id"), &event.id)?;
    let payload = event.payload.as_ref().ok_or_else(|| {
        GatewayError::invalid(
            field.field("payload"),
            "one of user, order or data is required",
        )
    })?;
    let (data, default_type, aggregate) = match payload {
        Payload::User(user) => user_data(&field.field("user"), user)?,
        Payload::Order(order) => order_data(&field.field("order"), order)?,
        Payload::Data(data) => (json::from_struct(&field.field("data"), data)?, None, None),
    };
    let event_type = if event.r#type.is_empty() {
        default_type.ok_or_else(|| {
            GatewayError::invalid(field.field("type"), "is required for a data payload")
        })?
    } else {
        event.r#type.clone()
    };
    let source = if event.source.is_empty() {
        "iggy-grpc".to_owned()
    } else {
        event.source.clone()
    };
    let time = match &event.time {
        Some(time) => validate::timestamp(&field.field("time").to_string(), time)?,
        None => prost_types::Timestamp::from(SystemTime::now()),
    };

    let mut document = json!({
        "specversion": "1.0",
        "id": id.hyphenated().to_string(),
        "type": event_type,
        "source": source,
        "time": time.to_string(),
        "datacontenttype": CONTENT_TYPE,
        "data": data,
    });
    if !event.correlation_id.is_empty()
        && let Json::Object(fields) = &mut document
    {
        fields.insert(
            "correlationid".into(),
            Json::String(event.correlation_id.clone()),
        );
    }
    let payload = Bytes::from(document.to_string());
    if payload.len() > limits.max_payload_bytes {
        return Err(GatewayError::invalid(
            field,
            format!(
                "the stored event is {} bytes; the limit is {}",
                payload.len(),
                limits.max_payload_bytes
            ),
        ));
    }

    let mut headers = BTreeMap::new();
    header(&mut headers, field, "content-type", CONTENT_TYPE)?;
    header(
        &mut headers,
        &field.field("type"),
        "event-type",
        &event_type,
    )?;
    header(
        &mut headers,
        &field.field("source"),
        "event-source",
        &source,
    )?;
    if !event.correlation_id.is_empty() {
        header(
            &mut headers,
            &field.field("correlation_id"),
            "correlation-id",
            &event.correlation_id,
        )?;
    }
    crate::messaging::headers::add_traceparent(&mut headers, stamp.traceparent);
    Ok(EventMessage {
        outgoing: Outgoing::new(id, payload, Some(&headers), stamp.accepted_at),
        default_route: aggregate.map_or(Route::Balanced, |key| Route::Key(Bytes::from(key))),
    })
}

fn header(
    headers: &mut BTreeMap<HeaderKey, HeaderValue>,
    field: &FieldPath<'_>,
    key: &str,
    value: &str,
) -> Result<(), GatewayError> {
    if value.len() > MAX_HEADER_FIELD_BYTES {
        return Err(GatewayError::invalid(
            field,
            format!("must be at most {MAX_HEADER_FIELD_BYTES} bytes"),
        ));
    }
    let key = HeaderKey::try_from(key).map_err(|e| GatewayError::Internal(e.to_string()))?;
    let value =
        HeaderValue::try_from(value).map_err(|e| GatewayError::invalid(field, e.to_string()))?;
    headers.insert(key, value);
    Ok(())
}

/// The aggregate id: required, and usable as a partition key.
fn aggregate_id(field: &FieldPath<'_>, id: &str) -> Result<String, GatewayError> {
    if id.is_empty() || id.len() > MAX_HEADER_FIELD_BYTES {
        return Err(GatewayError::invalid(
            field,
            format!("is required, 1-{MAX_HEADER_FIELD_BYTES} bytes"),
        ));
    }
    Ok(id.to_owned())
}

type EventData = (Json, Option<String>, Option<String>);

fn user_data(field: &FieldPath<'_>, user: &proto::UserEvent) -> Result<EventData, GatewayError> {
    let kind = match user.kind() {
        user_event::Kind::Unspecified => {
            return Err(GatewayError::invalid(field.field("kind"), "must be set"));
        }
        user_event::Kind::Created => "created",
        user_event::Kind::Updated => "updated",
        user_event::Kind::Deleted => "deleted",
        user_event::Kind::LoggedIn => "logged_in",
    };
    let user_id = aggregate_id(&field.field("user_id"), &user.user_id)?;
    let data = json!({
        "kind": kind,
        "user_id": user_id,
        "email": user.email,
        "display_name": user.display_name,
    });
    Ok((data, Some(format!("user.{kind}")), Some(user_id)))
}

fn order_data(field: &FieldPath<'_>, order: &proto::OrderEvent) -> Result<EventData, GatewayError> {
    let kind = match order.kind() {
        order_event::Kind::Unspecified => {
            return Err(GatewayError::invalid(field.field("kind"), "must be set"));
        }
        order_event::Kind::Created => "created",
        order_event::Kind::Updated => "updated",
        order_event::Kind::Cancelled => "cancelled",
        order_event::Kind::Shipped => "shipped",
    };
    let order_id = aggregate_id(&field.field("order_id"), &order.order_id)?;
    let iso_code =
        order.currency.len() == 3 && order.currency.chars().all(|c| c.is_ascii_uppercase());
    if !order.currency.is_empty() && !iso_code {
        return Err(GatewayError::invalid(
            field.field("currency"),
            "must be an ISO 4217 code such as \"EUR\"",
        ));
    }
    money::check_order(field, order)?;
    let items: Vec<Json> = order
        .items
        .iter()
        .map(|item| json!({"sku": item.sku, "quantity": item.quantity, "unit_price": item.unit_price}))
        .collect();
    let data = json!({
        "kind": kind,
        "order_id": order_id,
        "customer_id": order.customer_id,
        "items": items,
        "total": order.total,
        "currency": order.currency,
    });
    Ok((data, Some(format!("order.{kind}")), Some(order_id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order_event() -> proto::Event {
        proto::Event {
            correlation_id: "flow-1".into(),
            payload: Some(Payload::Order(proto::OrderEvent {
                kind: order_event::Kind::Created as i32,
                order_id: "order-42".into(),
                customer_id: "c-1".into(),
                items: vec![proto::LineItem {
                    sku: "book".into(),
                    quantity: 2,
                    unit_price: "4.50".into(),
                }],
                total: "9.00".into(),
                currency: "EUR".into(),
            })),
            ..Default::default()
        }
    }

    #[test]
    fn an_order_event_is_json_keyed_by_its_order() {
        let built = build(
            &FieldPath::root("event"),
            Some(order_event()),
            &PublishLimits::default(),
            Stamp::default(),
        )
        .expect("valid");
        assert_eq!(
            built.default_route,
            Route::Key(Bytes::from_static(b"order-42"))
        );
        let document: Json = serde_json::from_slice(&built.outgoing.message.payload).expect("json");
        assert_eq!(document["type"], "order.created");
        assert_eq!(document["id"], built.outgoing.id.as_str());
        assert_eq!(document["correlationid"], "flow-1");
        assert_eq!(document["data"]["total"], "9.00");
        assert_eq!(document["data"]["items"][0]["unit_price"], "4.50");
        let headers = built
            .outgoing
            .message
            .user_headers_map()
            .expect("headers")
            .expect("some");
        let content_type = HeaderKey::try_from("content-type").expect("key");
        assert_eq!(
            headers[&content_type].as_str().expect("string"),
            CONTENT_TYPE
        );
    }

    #[test]
    fn invalid_events_name_the_field() {
        let mut missing_kind = order_event();
        if let Some(Payload::Order(order)) = &mut missing_kind.payload {
            order.kind = 0;
        }
        let error = build(
            &FieldPath::root("event"),
            Some(missing_kind),
            &PublishLimits::default(),
            Stamp::default(),
        )
        .err();
        assert!(
            matches!(error, Some(GatewayError::InvalidArgument { ref field, .. }) if field == "event.order.kind")
        );

        let data_without_type = proto::Event {
            payload: Some(Payload::Data(prost_types::Struct::default())),
            ..Default::default()
        };
        let error = build(
            &FieldPath::root("event"),
            Some(data_without_type),
            &PublishLimits::default(),
            Stamp::default(),
        )
        .err();
        assert!(
            matches!(error, Some(GatewayError::InvalidArgument { ref field, .. }) if field == "event.type")
        );

        let no_payload = proto::Event::default();
        let error = build(
            &FieldPath::root("event"),
            Some(no_payload),
            &PublishLimits::default(),
            Stamp::default(),
        )
        .err();
        assert!(
            matches!(error, Some(GatewayError::InvalidArgument { ref field, .. }) if field == "event.payload")
        );
    }
}
