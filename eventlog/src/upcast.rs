//! Upcasting: old stored event versions are rewritten to the current shape as they are loaded.
//!
//! Stored events are never changed. When an event's serde shape changes, its `event_version` goes
//! up, and an [`Upcaster`] from the old version is registered (in `schemas`, next to the golden
//! fixtures that prove old versions still load).

use serde_json::Value;

/// Rewrites one version of one event type into the next version.
#[derive(Clone, Copy)]
pub struct Upcaster {
    pub event_type: &'static str,
    pub from_version: &'static str,
    pub to_version: &'static str,
    pub upcast: fn(Value) -> Result<Value, String>,
}

/// Applies every matching upcaster in turn, until none matches; returns the final version and
/// payload. The payload is expected in the event enum's externally tagged form
/// (`{"EventType": {...}}`).
pub fn upcast(
    upcasters: &[Upcaster],
    event_type: &str,
    mut version: String,
    mut payload: Value,
) -> Result<(String, Value), String> {
    // a chain can never be longer than the number of upcasters; this bound stops a cycle
    for _ in 0..=upcasters.len() {
        let Some(step) = upcasters
            .iter()
            .find(|u| u.event_type == event_type && u.from_version == version)
        else {
            return Ok((version, payload));
        };
        payload = (step.upcast)(payload)?;
        version = step.to_version.to_owned();
    }
    Err(format!("upcasters for {event_type} form a cycle"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rename_cents(payload: Value) -> Result<Value, String> {
        let mut body = payload["Priced"].clone();
        let cents = body
            .as_object_mut()
            .and_then(|o| o.remove("cents"))
            .ok_or("no cents")?;
        body["amount_minor"] = cents;
        Ok(json!({ "Priced": body }))
    }

    fn add_currency(payload: Value) -> Result<Value, String> {
        let mut payload = payload;
        payload["Priced"]["currency"] = json!("EUR");
        Ok(payload)
    }

    const CHAIN: &[Upcaster] = &[
        Upcaster {
            event_type: "Priced",
            from_version: "2",
            to_version: "3",
            upcast: add_currency,
        },
        Upcaster {
            event_type: "Priced",
            from_version: "1",
            to_version: "2",
            upcast: rename_cents,
        },
    ];

    #[test]
    fn upcasters_chain_until_the_current_version() {
        let (version, payload) = upcast(
            CHAIN,
            "Priced",
            "1".into(),
            json!({"Priced": {"cents": 250}}),
        )
        .unwrap();
        assert_eq!(version, "3");
        assert_eq!(
            payload,
            json!({"Priced": {"amount_minor": 250, "currency": "EUR"}})
        );
    }

    #[test]
    fn a_current_event_is_left_alone() {
        let payload = json!({"Other": {"x": 1}});
        let (version, out) = upcast(CHAIN, "Other", "1".into(), payload.clone()).unwrap();
        assert_eq!((version.as_str(), out), ("1", payload));
    }

    #[test]
    fn a_failing_upcaster_is_an_error_not_a_panic() {
        let result = upcast(CHAIN, "Priced", "1".into(), json!({"Priced": {}}));
        assert_eq!(result, Err("no cents".to_owned()));
    }
}
