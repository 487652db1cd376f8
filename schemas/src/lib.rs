//! shop's wire contracts for stored events: their JSON Schemas (generated from the Rust types and
//! committed under `schemas/events/`), the golden fixtures of every version ever stored
//! (`schemas/fixtures/<aggregate>/<EventType>.v<N>.json`, never edited, only added to), and the
//! upcasters that turn old versions into current ones on load.
//!
//! To change an event's shape: bump its version in the domain, add an [`Upcaster`] from the old
//! version here, add a fixture of the new version, and regenerate the schemas with
//! `UPDATE_SCHEMAS=1 cargo test -p schemas`. The old fixture stays and must keep loading.

pub mod fold;
pub mod personal;
pub mod stores;

use cqrs_es::DomainEvent;
use domain::{CartEvent, CheckoutEvent, InventoryEvent, OrderEvent, PaymentEvent, ProductEvent};
use eventlog::upcast::{upcast, Upcaster};
use serde_json::Value;

/// Every aggregate type, as stored in `events.aggregate_type`.
pub const AGGREGATE_TYPES: &[&str] = &[
    "product",
    "inventory",
    "cart",
    "order",
    "payment",
    "checkout",
];

/// The upcasters of one aggregate type's events. No event has changed shape yet, so every list
/// is empty; the mechanism is tested in `eventlog::upcast`.
pub fn upcasters(aggregate_type: &str) -> &'static [Upcaster] {
    // add e.g. `"product" => PRODUCT_UPCASTERS` here once a product event changes shape
    let _ = aggregate_type;
    &[]
}

/// The event type names of an aggregate type, or `None` for an unknown one.
pub fn event_types(aggregate_type: &str) -> Option<&'static [&'static str]> {
    Some(match aggregate_type {
        "product" => domain::product::EVENT_TYPES,
        "inventory" => domain::inventory::EVENT_TYPES,
        "cart" => domain::cart::EVENT_TYPES,
        "order" => domain::order::EVENT_TYPES,
        "payment" => domain::payment::EVENT_TYPES,
        "checkout" => domain::checkout::EVENT_TYPES,
        _ => return None,
    })
}

/// The JSON Schema of an aggregate type's event payloads.
pub fn event_schema(aggregate_type: &str) -> Option<Value> {
    let schema = match aggregate_type {
        "product" => schemars::schema_for!(ProductEvent),
        "inventory" => schemars::schema_for!(InventoryEvent),
        "cart" => schemars::schema_for!(CartEvent),
        "order" => schemars::schema_for!(OrderEvent),
        "payment" => schemars::schema_for!(PaymentEvent),
        "checkout" => schemars::schema_for!(CheckoutEvent),
        _ => return None,
    };
    serde_json::to_value(schema).ok()
}

/// A stored event of any aggregate, decoded into its current Rust type.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyEvent {
    Product(ProductEvent),
    Inventory(InventoryEvent),
    Cart(CartEvent),
    Order(OrderEvent),
    Payment(PaymentEvent),
    Checkout(CheckoutEvent),
}

impl AnyEvent {
    pub fn event_type(&self) -> String {
        match self {
            AnyEvent::Product(e) => e.event_type(),
            AnyEvent::Inventory(e) => e.event_type(),
            AnyEvent::Cart(e) => e.event_type(),
            AnyEvent::Order(e) => e.event_type(),
            AnyEvent::Payment(e) => e.event_type(),
            AnyEvent::Checkout(e) => e.event_type(),
        }
    }

    pub fn to_payload(&self) -> Result<Value, serde_json::Error> {
        match self {
            AnyEvent::Product(e) => serde_json::to_value(e),
            AnyEvent::Inventory(e) => serde_json::to_value(e),
            AnyEvent::Cart(e) => serde_json::to_value(e),
            AnyEvent::Order(e) => serde_json::to_value(e),
            AnyEvent::Payment(e) => serde_json::to_value(e),
            AnyEvent::Checkout(e) => serde_json::to_value(e),
        }
    }
}

/// Why a stored event could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("unknown aggregate type `{0}`")]
    UnknownAggregate(String),
    #[error("cannot upcast {event_type} v{version}: {reason}")]
    Upcast {
        event_type: String,
        version: String,
        reason: String,
    },
    #[error("{event_type} v{version} does not match its type: {reason}")]
    Shape {
        event_type: String,
        version: String,
        reason: String,
    },
}

/// Upcasts a stored payload to the current version and deserializes it. Personal fields
/// (sealed or not) come out as [`personal::REDACTED`]: what read models see. Readers that need
/// them open them with [`personal::Keyring::decode`].
pub fn decode(
    aggregate_type: &str,
    event_type: &str,
    event_version: &str,
    mut payload: Value,
) -> Result<AnyEvent, DecodeError> {
    personal::redact(aggregate_type, event_type, &mut payload, personal::REDACTED);
    decode_plain(aggregate_type, event_type, event_version, payload)
}

/// [`decode`] without the redaction: plaintext personal fields (opened by a keyring, or stored
/// before sealing) come out as they are; a sealed one does not deserialize. For the contract
/// tests and [`personal::Keyring::decode`]; readers of stored events use [`decode`].
pub fn decode_plain(
    aggregate_type: &str,
    event_type: &str,
    event_version: &str,
    payload: Value,
) -> Result<AnyEvent, DecodeError> {
    let (version, payload) = upcast(
        upcasters(aggregate_type),
        event_type,
        event_version.to_owned(),
        payload,
    )
    .map_err(|reason| DecodeError::Upcast {
        event_type: event_type.to_owned(),
        version: event_version.to_owned(),
        reason,
    })?;
    from_current(aggregate_type, event_type, &version, &payload)
}

/// [`decode`] of a borrowed payload: copied only when an upcaster has to change it or it has
/// personal fields to redact, so readers of the log (projections, sagas) deserialize straight
/// from what they read.
pub fn decode_ref(
    aggregate_type: &str,
    event_type: &str,
    event_version: &str,
    payload: &Value,
) -> Result<AnyEvent, DecodeError> {
    let outdated = upcasters(aggregate_type)
        .iter()
        .any(|u| u.event_type == event_type && u.from_version == event_version);
    if outdated || personal::carries_personal_data(aggregate_type, event_type) {
        return decode(aggregate_type, event_type, event_version, payload.clone());
    }
    from_current(aggregate_type, event_type, event_version, payload)
}

/// Deserializes a payload already at its current version.
fn from_current(
    aggregate_type: &str,
    event_type: &str,
    version: &str,
    payload: &Value,
) -> Result<AnyEvent, DecodeError> {
    use serde::Deserialize;
    let shape = |e: serde_json::Error| DecodeError::Shape {
        event_type: event_type.to_owned(),
        version: version.to_owned(),
        reason: e.to_string(),
    };
    Ok(match aggregate_type {
        "product" => AnyEvent::Product(ProductEvent::deserialize(payload).map_err(shape)?),
        "inventory" => AnyEvent::Inventory(InventoryEvent::deserialize(payload).map_err(shape)?),
        "cart" => AnyEvent::Cart(CartEvent::deserialize(payload).map_err(shape)?),
        "order" => AnyEvent::Order(OrderEvent::deserialize(payload).map_err(shape)?),
        "payment" => AnyEvent::Payment(PaymentEvent::deserialize(payload).map_err(shape)?),
        "checkout" => AnyEvent::Checkout(CheckoutEvent::deserialize(payload).map_err(shape)?),
        other => return Err(DecodeError::UnknownAggregate(other.to_owned())),
    })
}
