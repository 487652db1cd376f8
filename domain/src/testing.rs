//! Shared helpers for the domain's unit tests (compiled only under `cfg(test)`).

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;

use crate::values::{Currency, Money, Quantity, Sku};

pub fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).expect("valid test timestamp")
}

pub fn sku(s: &str) -> Sku {
    Sku::parse(s).expect("valid test sku")
}

pub fn qty(n: u32) -> Quantity {
    Quantity::new(n).expect("valid test quantity")
}

pub fn currency(code: &str) -> Currency {
    Currency::parse(code).expect("valid test currency")
}

pub fn eur(amount_minor: i64) -> Money {
    Money::new(amount_minor, currency("EUR"))
}

pub fn usd(amount_minor: i64) -> Money {
    Money::new(amount_minor, currency("USD"))
}

pub fn uuid(n: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128(n)
}

/// Asserts that every event survives a JSON round trip, is externally tagged
/// with its `event_type()`, has version "1", and that `events` covers exactly
/// the listed `event_types`.
pub fn assert_round_trip<E: DomainEvent>(events: &[E], event_types: &[&str]) {
    let mut seen = std::collections::BTreeSet::new();
    for event in events {
        let json = serde_json::to_value(event).expect("serialize");
        let back: E = serde_json::from_value(json.clone()).expect("deserialize");
        assert_eq!(&back, event);
        let obj = json.as_object().expect("externally tagged object");
        assert_eq!(obj.len(), 1, "one tag key in {json}");
        let tag = obj.keys().next().expect("tag");
        assert_eq!(tag, &event.event_type());
        assert!(obj[tag].is_object(), "struct variant payload in {json}");
        assert_eq!(event.event_version(), "1");
        assert!(
            event_types.contains(&tag.as_str()),
            "{tag} missing from EVENT_TYPES"
        );
        seen.insert(tag.clone());
    }
    let listed: std::collections::BTreeSet<String> =
        event_types.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(
        seen, listed,
        "round-trip sample must cover every event type"
    );
}
