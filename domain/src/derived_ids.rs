//! Ids derived from other ids (UUID v5 in the OID namespace), so whoever retries a step names
//! the same stream: one cart checks out into one order, one order has one payment, a paid
//! order's cancellation has one refund. These ids are stored as stream and refund ids: their
//! values must never change (the tests pin them).

use uuid::Uuid;

use crate::values::{CartId, CustomerId, OrderId, PaymentId, RefundId, ReviewId, Sku};

fn derived(kind: &str, of: impl std::fmt::Display) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("shop:{kind}:{of}").as_bytes())
}

/// The order a cart's checkout places.
pub fn order_id_of_cart(cart_id: CartId) -> OrderId {
    OrderId::new(derived("order-of-cart", cart_id))
}

/// The payment stream of an order.
pub fn payment_id_of_order(order_id: OrderId) -> PaymentId {
    PaymentId::new(derived("payment-of-order", order_id))
}

/// The refund id of the full refund that a cancellation of a paid order triggers.
pub fn cancellation_refund_id(order_id: OrderId) -> RefundId {
    RefundId::new(derived("cancellation-refund", order_id))
}

/// The review stream of a customer's review of a product: one per customer and SKU, so "one
/// review per customer and product" is the stream's own invariant.
pub fn review_id_of(customer: CustomerId, sku: &Sku) -> ReviewId {
    ReviewId::new(derived("review", format!("{customer}:{sku}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> Uuid {
        Uuid::parse_str(text).unwrap()
    }

    #[test]
    fn derived_ids_keep_the_values_already_stored() {
        // computed independently (Python's uuid.uuid5(NAMESPACE_OID, "shop:<kind>:<id>"))
        assert_eq!(
            order_id_of_cart(CartId::new(Uuid::from_u128(2))).as_uuid(),
            id("2f711126-904e-50d8-bc40-b707ba7be688")
        );
        assert_eq!(
            payment_id_of_order(OrderId::new(Uuid::from_u128(1))).as_uuid(),
            id("407f92f2-8818-52b9-8603-9aaba1b28059")
        );
        assert_eq!(
            cancellation_refund_id(OrderId::new(Uuid::from_u128(1))).as_uuid(),
            id("1e169ee8-988e-5237-8812-2d15d9ad4672")
        );
        assert_eq!(
            review_id_of(
                CustomerId::new(Uuid::from_u128(1)),
                &Sku::parse("MUG-1").unwrap()
            )
            .as_uuid(),
            id("eefdfe45-bf2d-5d08-a943-da7f65fc4479")
        );
    }

    #[test]
    fn each_kind_of_derivation_gives_another_id() {
        let same = Uuid::from_u128(7);
        let ids = [
            order_id_of_cart(CartId::new(same)).as_uuid(),
            payment_id_of_order(OrderId::new(same)).as_uuid(),
            cancellation_refund_id(OrderId::new(same)).as_uuid(),
        ];
        assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
        let mug = Sku::parse("MUG-1").unwrap();
        let review = review_id_of(CustomerId::new(same), &mug).as_uuid();
        assert!(!ids.contains(&review));
        assert_ne!(
            review_id_of(CustomerId::new(Uuid::from_u128(8)), &mug).as_uuid(),
            review
        );
        assert_ne!(
            review_id_of(CustomerId::new(same), &Sku::parse("MUG-2").unwrap()).as_uuid(),
            review
        );
        assert_ne!(
            payment_id_of_order(OrderId::new(Uuid::from_u128(8))).as_uuid(),
            ids[1]
        );
    }
}
