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

use cqrs_es::{Aggregate, DomainEvent};
use eventlog::upcast::{upcast, Upcaster};
use serde_json::Value;

/// The one table of stored aggregate types: every list and dispatch on an aggregate type in this
/// crate ([`AGGREGATE_TYPES`], [`event_types`], [`event_schema`], [`AnyEvent`], decoding,
/// [`fold::fold_to_json`]) is generated from it, so a new aggregate is one line here.
///
/// Each line: `AnyEvent` variant => aggregate type, event type, the event module's `EVENT_TYPES`.
/// `$callback` is a macro given the whole table.
macro_rules! with_aggregates {
    ($callback:ident) => {
        $callback! {
            Product => domain::Product, domain::ProductEvent, domain::product::EVENT_TYPES;
            Inventory => domain::Inventory, domain::InventoryEvent, domain::inventory::EVENT_TYPES;
            Cart => domain::Cart, domain::CartEvent, domain::cart::EVENT_TYPES;
            Order => domain::Order, domain::OrderEvent, domain::order::EVENT_TYPES;
            Payment => domain::Payment, domain::PaymentEvent, domain::payment::EVENT_TYPES;
            Checkout => domain::CheckoutProcess, domain::CheckoutEvent, domain::checkout::EVENT_TYPES;
            Catalog => domain::Catalog, domain::CatalogEvent, domain::catalog::EVENT_TYPES;
            Review => domain::Review, domain::ReviewEvent, domain::review::EVENT_TYPES;
        }
    };
}
pub(crate) use with_aggregates;

macro_rules! aggregate_lists {
    ($($variant:ident => $aggregate:ty, $event:ty, $event_types:path;)*) => {
        /// Every aggregate type, as stored in `events.aggregate_type`.
        pub const AGGREGATE_TYPES: &[&str] = &[$(<$aggregate as Aggregate>::TYPE),*];

        /// The event type names of an aggregate type, or `None` for an unknown one.
        pub fn event_types(aggregate_type: &str) -> Option<&'static [&'static str]> {
            $(
                if aggregate_type == <$aggregate as Aggregate>::TYPE {
                    return Some($event_types);
                }
            )*
            None
        }

        /// The JSON Schema of an aggregate type's event payloads.
        pub fn event_schema(aggregate_type: &str) -> Option<Value> {
            $(
                if aggregate_type == <$aggregate as Aggregate>::TYPE {
                    return serde_json::to_value(schemars::schema_for!($event)).ok();
                }
            )*
            None
        }

        /// A stored event of any aggregate, decoded into its current Rust type.
        #[derive(Debug, Clone, PartialEq)]
        pub enum AnyEvent {
            $($variant($event),)*
        }

        impl AnyEvent {
            pub fn event_type(&self) -> String {
                match self {
                    $(AnyEvent::$variant(e) => e.event_type(),)*
                }
            }

            pub fn to_payload(&self) -> Result<Value, serde_json::Error> {
                match self {
                    $(AnyEvent::$variant(e) => serde_json::to_value(e),)*
                }
            }
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
            $(
                if aggregate_type == <$aggregate as Aggregate>::TYPE {
                    return Ok(AnyEvent::$variant(<$event>::deserialize(payload).map_err(shape)?));
                }
            )*
            Err(DecodeError::UnknownAggregate(aggregate_type.to_owned()))
        }
    };
}

with_aggregates!(aggregate_lists);

/// The upcasters of one aggregate type's events. No event has changed shape yet, so every list
/// is empty; the mechanism is tested in `eventlog::upcast`.
pub fn upcasters(aggregate_type: &str) -> &'static [Upcaster] {
    // add e.g. `"product" => PRODUCT_UPCASTERS` here once a product event changes shape
    let _ = aggregate_type;
    &[]
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
