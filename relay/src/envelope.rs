//! The message format on Kafka: the JSON envelope (its JSON Schema is committed as
//! `schemas/events/envelope.json`; a test fails when they disagree) and the topic names.

use chrono::{DateTime, Utc};
use eventlog::{LogPosition, RecordedEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Where events that a consumer cannot handle go, with the error in a header.
pub const DEAD_LETTER_TOPIC: &str = "shop.dead-letter.v1";

/// The topic of an aggregate type's events; the version changes when the envelope does.
pub fn topic_for(aggregate_type: &str) -> String {
    format!("shop.{aggregate_type}.v1")
}

/// One event as published: everything a consumer outside shop needs, with no database behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The event's place in its stream, from 1.
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// Its place in shop's log (`XID.POSITION`).
    pub position: String,
    pub recorded_at: DateTime<Utc>,
    pub payload: Value,
    /// Correlation, causation, actor, command id, request id.
    pub metadata: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not an event envelope: {0}")]
    Json(#[from] serde_json::Error),
    #[error("bad position: {0}")]
    Position(String),
}

impl Envelope {
    pub fn of(event: &RecordedEvent) -> Envelope {
        Envelope {
            event_id: event.event_id,
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id.clone(),
            sequence: event.sequence,
            event_type: event.event_type.clone(),
            event_version: event.event_version.clone(),
            position: event.position.to_string(),
            recorded_at: event.recorded_at,
            payload: event.payload.clone(),
            metadata: event.metadata.clone(),
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    pub fn into_recorded(self) -> Result<RecordedEvent, EnvelopeError> {
        let position: LogPosition = self.position.parse().map_err(EnvelopeError::Position)?;
        Ok(RecordedEvent {
            position,
            event_id: self.event_id,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            event_type: self.event_type,
            event_version: self.event_version,
            payload: self.payload,
            metadata: self.metadata,
            recorded_at: self.recorded_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_json_schema_is_the_envelopes() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../schemas/events/envelope.json"
        );
        let schema = serde_json::to_string_pretty(&schemars::schema_for!(Envelope)).unwrap() + "\n";
        if std::env::var_os("UPDATE_SCHEMAS").is_some() {
            std::fs::write(path, &schema).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == schema,
            "schemas/events/envelope.json is out of date: UPDATE_SCHEMAS=1 cargo test -p relay"
        );
    }

    #[test]
    fn an_envelope_round_trips_and_names_its_topic() {
        let event = eventlog::RecordedEvent {
            position: "12.34".parse().unwrap(),
            event_id: Uuid::new_v4(),
            aggregate_type: "order".into(),
            aggregate_id: "o-1".into(),
            sequence: 3,
            event_type: "OrderConfirmed".into(),
            event_version: "1".into(),
            payload: serde_json::json!({"OrderConfirmed": {}}),
            metadata: serde_json::json!({"correlation_id": "c"}),
            recorded_at: Utc::now(),
        };
        let bytes = serde_json::to_vec(&Envelope::of(&event)).unwrap();
        assert_eq!(
            Envelope::parse(&bytes).unwrap().into_recorded().unwrap(),
            event
        );
        assert_eq!(topic_for("order"), "shop.order.v1");
        assert!(Envelope::parse(b"{\"event_id\": 1}").is_err());
    }
}
