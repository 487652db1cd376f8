//! Payload codecs: a step between an event's domain form (what the aggregate emits and applies)
//! and its stored form (the `payload` column, which the hash chain covers).
//!
//! The event store calls [`PayloadCodec::encode`] on each event of an append before it is
//! hashed and written, and [`PayloadCodec::decode`] on each event it reads back, before upcasting
//! and deserializing. `schemas::personal` seals personal fields this way (per-customer keys that
//! can be erased), so the domain never sees a ciphertext and the chain never sees a plaintext.
//! A store without a codec stores the domain form as it is.

use async_trait::async_trait;
use serde_json::Value;

/// Why a codec could not encode or decode a payload.
pub type CodecError = Box<dyn std::error::Error + Send + Sync>;

#[async_trait]
pub trait PayloadCodec: Send + Sync {
    /// Turns one event's domain form into its stored form, in place.
    async fn encode(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        event_type: &str,
        payload: &mut Value,
    ) -> Result<(), CodecError>;

    /// Turns one stored event back into its domain form, in place.
    async fn decode(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        event_type: &str,
        payload: &mut Value,
    ) -> Result<(), CodecError>;
}
