//! Event metadata: who caused an event, in answer to what, as part of which conversation.
//!
//! Every event carries it (the `metadata` column). cqrs-es hands metadata around as a string map;
//! [`EventMetadata`] is the typed form and converts both ways.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who issued a command: a user and the role they acted in, or the system itself (a saga, a timer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The user id, or the component's name for system actors (e.g. `saga:checkout`).
    pub id: String,
    /// `customer`, `staff`, `auditor`, `guest` or `system`.
    pub role: String,
}

impl Actor {
    pub fn system(component: &str) -> Self {
        Self {
            id: component.to_owned(),
            role: "system".to_owned(),
        }
    }
}

/// The metadata stored with every event of one command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Ties together everything that follows from one outside request (a click, a webhook).
    pub correlation_id: Uuid,
    /// The event or request that caused this command (for a saga step: the event it reacted to).
    pub causation_id: Option<String>,
    pub actor: Actor,
    /// The command's own id: the idempotency key when the caller gave one.
    pub command_id: String,
    pub request_id: Option<String>,
    /// W3C `traceparent` of the span that issued the command, when tracing is on.
    pub traceparent: Option<String>,
}

impl EventMetadata {
    /// Metadata for a command that starts a new conversation.
    pub fn new(actor: Actor) -> Self {
        let command_id = Uuid::now_v7().to_string();
        Self {
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            actor,
            command_id,
            request_id: None,
            traceparent: None,
        }
    }

    /// The string map cqrs-es carries.
    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::new();
        map.insert("correlation_id".into(), self.correlation_id.to_string());
        map.insert("actor_id".into(), self.actor.id.clone());
        map.insert("actor_role".into(), self.actor.role.clone());
        map.insert("command_id".into(), self.command_id.clone());
        let optional = [
            ("causation_id", &self.causation_id),
            ("request_id", &self.request_id),
            ("traceparent", &self.traceparent),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                map.insert(key.into(), value.clone());
            }
        }
        map
    }

    /// Reads the string map back; `None` when a required key is missing or malformed.
    pub fn from_map(map: &HashMap<String, String>) -> Option<Self> {
        Some(Self {
            correlation_id: map.get("correlation_id")?.parse().ok()?,
            causation_id: map.get("causation_id").cloned(),
            actor: Actor {
                id: map.get("actor_id")?.clone(),
                role: map.get("actor_role")?.clone(),
            },
            command_id: map.get("command_id")?.clone(),
            request_id: map.get("request_id").cloned(),
            traceparent: map.get("traceparent").cloned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_survives_the_string_map() {
        let mut metadata = EventMetadata::new(Actor {
            id: "u-1".into(),
            role: "staff".into(),
        });
        metadata.causation_id = Some("evt-9".into());
        metadata.request_id = Some("req-3".into());
        assert_eq!(EventMetadata::from_map(&metadata.to_map()), Some(metadata));
    }

    #[test]
    fn a_map_without_an_actor_is_not_metadata() {
        let mut map = EventMetadata::new(Actor::system("test")).to_map();
        map.remove("actor_id");
        assert_eq!(EventMetadata::from_map(&map), None);
    }
}
