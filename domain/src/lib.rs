//! The pure domain of shop: value types, aggregates, commands and events; no I/O.
//!
//! Every aggregate is a `cqrs_es::Aggregate` with `Services = ()`. Decision
//! logic lives in a synchronous `decide` method on each aggregate that returns
//! the events a command produces; `handle` writes them to the event sink, which
//! applies each one. Events are externally tagged enums of struct variants
//! (`{"ProductCreated": {...}}`), all at version "1"; each event module lists
//! its variant names in `EVENT_TYPES`.

pub mod cart;
pub mod checkout;
pub mod inventory;
pub mod order;
pub mod payment;
pub mod product;
pub mod values;

pub use cart::{Cart, CartCommand, CartError, CartEvent};
pub use checkout::{CheckoutCommand, CheckoutError, CheckoutEvent, CheckoutProcess};
pub use inventory::{Inventory, InventoryCommand, InventoryError, InventoryEvent};
pub use order::{Order, OrderCommand, OrderError, OrderEvent};
pub use payment::{Payment, PaymentCommand, PaymentError, PaymentEvent};
pub use product::{Product, ProductCommand, ProductError, ProductEvent};
pub use values::{
    Address, CartId, CountryCode, Currency, CustomerId, Email, Money, OrderId, OrderNumber,
    PaymentId, Quantity, RefundId, Sku, ValueError,
};

/// The current version of every event type.
pub const EVENT_VERSION: &str = "1";

#[cfg(test)]
mod testing;

#[cfg(test)]
mod tests {
    use cqrs_es::Aggregate;

    fn assert_schema_lists<T: schemars::JsonSchema>(event_types: &[&str]) {
        let schema = serde_json::to_string(&schemars::schema_for!(T)).expect("schema json");
        for name in event_types {
            assert!(
                schema.contains(&format!("\"{name}\"")),
                "{name} missing from schema"
            );
        }
    }

    #[test]
    fn every_event_enum_has_a_json_schema_naming_all_variants() {
        assert_schema_lists::<crate::ProductEvent>(crate::product::EVENT_TYPES);
        assert_schema_lists::<crate::InventoryEvent>(crate::inventory::EVENT_TYPES);
        assert_schema_lists::<crate::CartEvent>(crate::cart::EVENT_TYPES);
        assert_schema_lists::<crate::OrderEvent>(crate::order::EVENT_TYPES);
        assert_schema_lists::<crate::PaymentEvent>(crate::payment::EVENT_TYPES);
    }

    #[test]
    fn aggregate_types() {
        assert_eq!(crate::Product::TYPE, "product");
        assert_eq!(crate::Inventory::TYPE, "inventory");
        assert_eq!(crate::Cart::TYPE, "cart");
        assert_eq!(crate::Order::TYPE, "order");
        assert_eq!(crate::Payment::TYPE, "payment");
    }
}
