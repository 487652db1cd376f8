//! The pure domain of shop: value types, aggregates, commands and events; no I/O.
//!
//! Every aggregate is a `cqrs_es::Aggregate` with `Services = ()`. Decision
//! logic lives in a synchronous `decide` method on each aggregate that returns
//! the events a command produces; `handle` writes them to the event sink, which
//! applies each one. Events are externally tagged enums of struct variants
//! (`{"ProductCreated": {...}}`), all at version "1"; each event module lists
//! its variant names in `EVENT_TYPES`.

pub mod cart;
pub mod catalog;
pub mod checkout;
pub mod derived_ids;
pub mod inventory;
pub mod order;
pub mod payment;
pub mod pricing;
pub mod product;
pub mod review;
pub mod values;

pub use cart::{Cart, CartCommand, CartError, CartEvent};
pub use catalog::{Catalog, CatalogCommand, CatalogError, CatalogEvent};
pub use checkout::{CheckoutCommand, CheckoutError, CheckoutEvent, CheckoutProcess};
pub use inventory::{Inventory, InventoryCommand, InventoryError, InventoryEvent};
pub use order::{Order, OrderCommand, OrderError, OrderEvent};
pub use payment::{Payment, PaymentCommand, PaymentError, PaymentEvent};
pub use product::{
    ImageFormat, ImageId, Product, ProductCommand, ProductError, ProductEvent, ProductImage,
};
pub use review::{Rating, Review, ReviewCommand, ReviewError, ReviewEvent};
pub use values::{
    Address, CartId, CountryCode, Currency, CustomerId, Email, Money, OrderId, OrderNumber,
    PaymentId, Quantity, RefundId, ReviewId, Sku, ValueError,
};

/// The current version of every event type.
pub const EVENT_VERSION: &str = "1";

#[cfg(test)]
mod testing;

#[cfg(test)]
mod tests {
    use cqrs_es::Aggregate;

    use std::collections::BTreeSet;

    /// The variant names of an externally tagged event enum, read from its JSON Schema (a
    /// `oneOf` of objects with one required key each): derived from the type, so a new variant
    /// shows up here without anyone listing it.
    fn variants_of<T: schemars::JsonSchema>() -> BTreeSet<String> {
        let schema = serde_json::to_value(schemars::schema_for!(T)).expect("schema json");
        let one_of = schema["oneOf"]
            .as_array()
            .expect("an event enum is a oneOf");
        one_of
            .iter()
            .map(|variant| {
                let required = variant["required"].as_array().expect("a tagged variant");
                assert_eq!(required.len(), 1, "{variant}");
                required[0].as_str().expect("the tag").to_owned()
            })
            .collect()
    }

    fn assert_lists_every_variant<T: schemars::JsonSchema>(event_types: &[&str]) {
        let listed: BTreeSet<String> = event_types.iter().map(|t| (*t).to_owned()).collect();
        assert_eq!(listed.len(), event_types.len(), "a name is listed twice");
        let variants = variants_of::<T>();
        let missing: Vec<_> = variants.difference(&listed).collect();
        let extra: Vec<_> = listed.difference(&variants).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{}: EVENT_TYPES lacks {missing:?} and lists {extra:?}, which is no variant",
            std::any::type_name::<T>()
        );
    }

    #[test]
    fn every_event_types_list_names_exactly_its_enums_variants() {
        assert_lists_every_variant::<crate::ProductEvent>(crate::product::EVENT_TYPES);
        assert_lists_every_variant::<crate::InventoryEvent>(crate::inventory::EVENT_TYPES);
        assert_lists_every_variant::<crate::CartEvent>(crate::cart::EVENT_TYPES);
        assert_lists_every_variant::<crate::OrderEvent>(crate::order::EVENT_TYPES);
        assert_lists_every_variant::<crate::PaymentEvent>(crate::payment::EVENT_TYPES);
        assert_lists_every_variant::<crate::CheckoutEvent>(crate::checkout::EVENT_TYPES);
        assert_lists_every_variant::<crate::CatalogEvent>(crate::catalog::EVENT_TYPES);
        assert_lists_every_variant::<crate::ReviewEvent>(crate::review::EVENT_TYPES);
    }

    #[test]
    fn the_check_finds_a_missing_or_invented_name() {
        let mut short = crate::checkout::EVENT_TYPES.to_vec();
        short.pop();
        let missing = std::panic::catch_unwind(|| {
            assert_lists_every_variant::<crate::CheckoutEvent>(&short);
        });
        assert!(missing.is_err());
        let mut invented = crate::cart::EVENT_TYPES.to_vec();
        invented.push("CartPainted");
        let extra = std::panic::catch_unwind(|| {
            assert_lists_every_variant::<crate::CartEvent>(&invented);
        });
        assert!(extra.is_err());
    }

    #[test]
    fn aggregate_types() {
        assert_eq!(crate::Product::TYPE, "product");
        assert_eq!(crate::Inventory::TYPE, "inventory");
        assert_eq!(crate::Cart::TYPE, "cart");
        assert_eq!(crate::Order::TYPE, "order");
        assert_eq!(crate::Payment::TYPE, "payment");
        assert_eq!(crate::CheckoutProcess::TYPE, "checkout");
        assert_eq!(crate::Catalog::TYPE, "catalog");
        assert_eq!(crate::Review::TYPE, "review");
    }
}
