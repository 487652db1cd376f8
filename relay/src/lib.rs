//! The event log on Kafka.
//!
//! - [`Relay`] (`shop relay`): a subscription that publishes every event to
//!   `shop.<aggregate>.v1`, keyed by aggregate id (so one stream's events keep their order in
//!   one partition), as the JSON [`Envelope`] with the event id, type, version and correlation id
//!   as headers. The producer is idempotent and the checkpoint moves only after the broker
//!   acknowledged every event of the batch: a crash or an outage republishes, never skips.
//! - [`KafkaSource`]: what a consumer follows instead of the PostgreSQL log when shop scales out
//!   (consumer groups spread partitions over replicas). It implements the same
//!   [`eventlog::source::EventSource`] trait as the log; consumers deduplicate by event id
//!   ([`KafkaProjection`]), and a message that cannot be handled goes to the dead-letter topic
//!   with its error while the consumer moves on.

mod envelope;
mod projection;
mod publisher;
mod source;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use envelope::{topic_for, Envelope, EnvelopeError, DEAD_LETTER_TOPIC};
pub use projection::{KafkaProjection, MIGRATIONS};
pub use publisher::{broker_reachable, ensure_topics, Relay, RelayConfig};
pub use source::{Delivery, KafkaSource, SourceConfig};

/// What can go wrong talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("event log: {0}")]
    Log(#[from] eventlog::Error),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot create topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
    #[error("projection: {0}")]
    Projection(#[from] projections::pg::ProjectionError),
    #[error("event source: {0}")]
    Source(String),
    #[error("envelope: {0}")]
    Envelope(#[from] EnvelopeError),
}
