//! The pure domain of shop: value types, aggregates, commands and events; no I/O.
//!
//! Every aggregate is a `cqrs_es::Aggregate` with `Services = ()`. Decision
//! logic lives in a synchronous `decide` method on each aggregate that returns
//! the events a command produces; `handle` writes them to the event sink.

pub mod values;

pub use values::{
    Address, CartId, CountryCode, Currency, CustomerId, Email, Money, OrderId, OrderNumber,
    PaymentId, Quantity, RefundId, Sku, ValueError,
};
pub mod cart;
pub mod inventory;
pub mod order;
pub mod product;

#[cfg(test)]
mod testing;
