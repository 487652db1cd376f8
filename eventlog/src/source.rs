//! Where a consumer's events come from: the PostgreSQL log (default, single node) or Kafka
//! (scale-out, `relay::KafkaSource`), behind one trait. The projectors and the saga runner take either.

use crate::{checkpoint, log, LogPosition, RecordedEvent};
use async_trait::async_trait;
use sqlx::PgPool;

/// An error of a source, whatever its transport.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// A message that is not an event this consumer can read.
#[derive(Clone, Debug)]
pub struct Poison {
    /// Where it came from (e.g. `shop.order.v1/3@1207`).
    pub origin: String,
    pub bytes: Vec<u8>,
    pub reason: String,
}

/// One delivery: an event, or a message that could not be read as one.
pub type Incoming = Result<RecordedEvent, Poison>;

/// A stream of events with acknowledgement. Events of one aggregate stream arrive in sequence
/// order; a source may deliver an event again after a failure (consumers deduplicate by event
/// id); nothing is lost before it is acknowledged.
#[async_trait]
pub trait EventSource: Send {
    /// Up to `limit` deliveries; empty when nothing is ready now.
    async fn next_batch(&mut self, limit: usize) -> Result<Vec<Incoming>, SourceError>;

    /// Everything returned so far is handled: do not deliver it again.
    async fn acknowledge(&mut self) -> Result<(), SourceError>;

    /// Sets a poison message aside with its reason (the dead-letter topic for Kafka).
    async fn dead_letter(&mut self, poison: &Poison, reason: &str) -> Result<(), SourceError>;
}

/// The PostgreSQL log from a named checkpoint: gap-safe, in log order, never poison.
pub struct PgLogSource {
    pool: PgPool,
    subscription: String,
    read: LogPosition,
    acknowledged: LogPosition,
}

impl PgLogSource {
    pub async fn new(pool: PgPool, subscription: &str) -> Result<PgLogSource, SourceError> {
        let position = checkpoint::load(&pool, subscription).await?;
        Ok(PgLogSource {
            pool,
            subscription: subscription.to_owned(),
            read: position,
            acknowledged: position,
        })
    }
}

#[async_trait]
impl EventSource for PgLogSource {
    async fn next_batch(&mut self, limit: usize) -> Result<Vec<Incoming>, SourceError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let batch = log::read_after(&self.pool, self.read, limit).await?;
        if let Some(last) = batch.last() {
            self.read = last.position;
        }
        Ok(batch.into_iter().map(Ok).collect())
    }

    async fn acknowledge(&mut self) -> Result<(), SourceError> {
        if self.read > self.acknowledged {
            checkpoint::save(&self.pool, &self.subscription, self.read).await?;
            self.acknowledged = self.read;
        }
        Ok(())
    }

    async fn dead_letter(&mut self, poison: &Poison, reason: &str) -> Result<(), SourceError> {
        tracing::error!(origin = %poison.origin, reason, "unreadable event in the log");
        Ok(())
    }
}
