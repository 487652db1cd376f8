//! Folding stored events back into an aggregate's state: what the auditor's "state at" query and
//! read paths that fall back to the event store use. Every event goes through [`crate::decode`],
//! so old versions are upcast exactly as the write side loads them.

use cqrs_es::Aggregate;
use eventlog::RecordedEvent;
use serde_json::Value;

use crate::{decode, DecodeError};

/// Folds `events` (one stream, in sequence order) into `A`'s state.
pub fn fold<A: Aggregate>(events: &[RecordedEvent]) -> Result<A, DecodeError> {
    let mut state = A::default();
    for event in events {
        state.apply(typed::<A>(event)?);
    }
    Ok(state)
}

fn typed<A: Aggregate>(event: &RecordedEvent) -> Result<A::Event, DecodeError> {
    let shape = |e: serde_json::Error| DecodeError::Shape {
        event_type: event.event_type.clone(),
        version: event.event_version.clone(),
        reason: e.to_string(),
    };
    let decoded = decode(
        &event.aggregate_type,
        &event.event_type,
        &event.event_version,
        event.payload.clone(),
    )?;
    serde_json::from_value(decoded.to_payload().map_err(shape)?).map_err(shape)
}

macro_rules! fold_dispatch {
    ($($variant:ident => $aggregate:ty, $event:ty, $event_types:path;)*) => {
        /// Folds one stream of any aggregate type into its state, as JSON (the aggregate's own
        /// serialized form).
        pub fn fold_to_json(
            aggregate_type: &str,
            events: &[RecordedEvent],
        ) -> Result<Value, DecodeError> {
            $(
                if aggregate_type == <$aggregate as Aggregate>::TYPE {
                    return json::<$aggregate>(events);
                }
            )*
            Err(DecodeError::UnknownAggregate(aggregate_type.to_owned()))
        }
    };
}

crate::with_aggregates!(fold_dispatch);

fn json<A: Aggregate>(events: &[RecordedEvent]) -> Result<Value, DecodeError> {
    let state = fold::<A>(events)?;
    serde_json::to_value(&state).map_err(|e| DecodeError::Shape {
        event_type: A::TYPE.to_owned(),
        version: String::new(),
        reason: e.to_string(),
    })
}
