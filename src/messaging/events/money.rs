//! Exact money for order events: amounts are decimal text parsed with
//! rust_decimal (never floating point), and an order's total must equal the
//! sum of its lines exactly.

use crate::{error::GatewayError, proto, validate::FieldPath};
use rust_decimal::Decimal;

/// A non-negative decimal amount such as `"19.99"`.
pub fn amount(field: &FieldPath<'_>, text: &str) -> Result<Decimal, GatewayError> {
    if text.is_empty() {
        return Err(GatewayError::invalid(
            field,
            "is required (decimal text, e.g. \"19.99\")",
        ));
    }
    if !text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(GatewayError::invalid(
            field,
            format!("must be plain decimal text such as \"19.99\", got {text:?}"),
        ));
    }
    // from_str_exact refuses (instead of rounding) digits beyond what a
    // Decimal holds, so the stored amount is the one the client sent.
    let value = Decimal::from_str_exact(text).map_err(|error| {
        GatewayError::invalid(field, format!("{text:?} is not an exact decimal: {error}"))
    })?;
    Ok(value)
}

/// Checks every line and that `total` equals the sum of quantity x unit price.
pub fn check_order(field: &FieldPath<'_>, order: &proto::OrderEvent) -> Result<(), GatewayError> {
    let items = field.field("items");
    if order.items.is_empty() {
        return Err(GatewayError::invalid(items, "must have at least one line"));
    }
    let currency = field.field("currency");
    if order.currency.len() != 3 || !order.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(GatewayError::invalid(
            currency,
            format!(
                "must be an ISO 4217 code of three capital letters, e.g. EUR, got {:?}",
                order.currency
            ),
        ));
    }
    let mut sum = Decimal::ZERO;
    for (index, item) in order.items.iter().enumerate() {
        let item_field = items.index(index);
        if item.sku.is_empty() {
            return Err(GatewayError::invalid(
                item_field.field("sku"),
                "must not be empty",
            ));
        }
        if item.quantity == 0 {
            return Err(GatewayError::invalid(
                item_field.field("quantity"),
                "must be at least 1",
            ));
        }
        let price = amount(&item_field.field("unit_price"), &item.unit_price)?;
        let line = price
            .checked_mul(Decimal::from(item.quantity))
            .and_then(|line| sum.checked_add(line))
            .ok_or_else(|| GatewayError::invalid(item_field, "the order total overflows"))?;
        sum = line;
    }
    let total = amount(&field.field("total"), &order.total)?;
    if total != sum {
        return Err(GatewayError::invalid(
            field.field("total"),
            format!("is {total} but the items sum to {sum} exactly"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(items: &[(u32, &str)], total: &str) -> proto::OrderEvent {
        proto::OrderEvent {
            items: items
                .iter()
                .map(|(quantity, price)| proto::LineItem {
                    sku: "sku".into(),
                    quantity: *quantity,
                    unit_price: (*price).into(),
                })
                .collect(),
            total: total.into(),
            currency: "EUR".into(),
            ..Default::default()
        }
    }

    /// The field `order` is refused for.
    fn refused_field(order: &proto::OrderEvent) -> Option<String> {
        match check_order(&FieldPath::root("order"), order) {
            Err(GatewayError::InvalidArgument { field, .. }) => Some(field),
            _ => None,
        }
    }

    #[test]
    fn what_the_proto_promises_is_checked() {
        assert_eq!(
            refused_field(&order(&[], "0")).as_deref(),
            Some("order.items")
        );
        let mut no_sku = order(&[(1, "1")], "1");
        no_sku.items[0].sku.clear();
        assert_eq!(
            refused_field(&no_sku).as_deref(),
            Some("order.items[0].sku")
        );
        for currency in ["", "eur", "EURO", "E1R"] {
            let mut odd = order(&[(1, "1")], "1");
            odd.currency = currency.into();
            assert_eq!(
                refused_field(&odd).as_deref(),
                Some("order.currency"),
                "{currency:?}"
            );
        }
        assert_eq!(
            refused_field(&order(&[(0, "1")], "0")).as_deref(),
            Some("order.items[0].quantity")
        );
        assert_eq!(refused_field(&order(&[(1, "1")], "1")), None);
    }

    #[test]
    fn exact_sums_pass_where_floating_point_would_not() {
        // 0.1 + 0.2 is 0.30000000000000004 in f64; here it is exactly 0.3.
        assert!(
            check_order(
                &FieldPath::root("order"),
                &order(&[(1, "0.1"), (1, "0.2")], "0.3")
            )
            .is_ok()
        );
        assert!(
            check_order(
                &FieldPath::root("order"),
                &order(&[(3, "19.99"), (2, "0.005")], "59.98")
            )
            .is_ok()
        );
        assert!(check_order(&FieldPath::root("order"), &order(&[(3, "19.99")], "59.970")).is_ok());
    }

    #[test]
    fn inexact_totals_name_the_total() {
        let error = check_order(
            &FieldPath::root("event").field("order"),
            &order(&[(1, "0.1"), (1, "0.2")], "0.30000001"),
        )
        .unwrap_err();
        assert!(
            matches!(error, GatewayError::InvalidArgument { ref field, .. } if field == "event.order.total")
        );
    }

    #[test]
    fn amounts_are_plain_non_negative_decimals() {
        for bad in ["", "-1.00", "1e3", "1,50", "NaN", "12.3.4"] {
            assert!(amount(&FieldPath::root("price"), bad).is_err(), "{bad}");
        }
        assert_eq!(
            amount(&FieldPath::root("price"), "4.50").expect("valid"),
            Decimal::new(450, 2)
        );
        let error =
            check_order(&FieldPath::root("order"), &order(&[(0, "1.00")], "0")).unwrap_err();
        assert!(
            matches!(error, GatewayError::InvalidArgument { ref field, .. } if field == "order.items[0].quantity")
        );
    }
}
