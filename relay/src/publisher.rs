//! The relay: the log, published.

use std::time::{Duration, Instant};

use eventlog::{checkpoint, log};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::{topic_for, Envelope, RelayError, DEAD_LETTER_TOPIC};

/// Settings of the relay.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// `host:port,...`
    pub brokers: String,
    /// Partitions of topics the relay creates.
    pub partitions: i32,
    pub replication: i32,
    /// Events per batch (one checkpoint per batch).
    pub batch: i64,
    /// The relay's checkpoint.
    pub subscription: String,
    /// How long the broker may take to acknowledge a message before the batch is retried.
    pub delivery_timeout: Duration,
}

impl RelayConfig {
    pub fn new(brokers: impl Into<String>) -> RelayConfig {
        RelayConfig {
            brokers: brokers.into(),
            partitions: 6,
            replication: 1,
            batch: 2_000,
            subscription: "kafka:relay".to_owned(),
            delivery_timeout: Duration::from_secs(10),
        }
    }
}

/// Whether the last batch of a relay in this process was acknowledged (true until one fails):
/// the process's readiness reports it.
static BROKER_REACHABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// False while a relay in this process cannot get its batches acknowledged.
pub fn broker_reachable() -> bool {
    BROKER_REACHABLE.load(std::sync::atomic::Ordering::Relaxed)
}

fn set_reachable(reachable: bool) {
    BROKER_REACHABLE.store(reachable, std::sync::atomic::Ordering::Relaxed);
    metrics::gauge!("shop_relay_up").set(if reachable { 1.0 } else { 0.0 });
}

pub struct Relay {
    pool: PgPool,
    /// Replaced after a failed batch: an idempotent producer can be left in a fatal state (e.g.
    /// a broker that restarted without the producer's sequence numbers), and a new producer id
    /// starts clean. The duplicates this can cause are dropped by consumers (event ids).
    producer: std::sync::Mutex<FutureProducer>,
    config: RelayConfig,
}

fn producer(config: &RelayConfig) -> Result<FutureProducer, RelayError> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        // exactly one copy per send even when librdkafka retries, in order per partition
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "none")
        .set(
            "message.timeout.ms",
            config.delivery_timeout.as_millis().to_string(),
        )
        .create()?)
}

impl Relay {
    pub fn new(pool: PgPool, config: RelayConfig) -> Result<Relay, RelayError> {
        Ok(Relay {
            pool,
            producer: std::sync::Mutex::new(producer(&config)?),
            config,
        })
    }

    /// Creates the topics of every aggregate type and the dead-letter topic when missing.
    pub async fn ensure_topics(&self) -> Result<(), RelayError> {
        ensure_topics(
            &self.config.brokers,
            self.config.partitions,
            self.config.replication,
        )
        .await
    }

    /// Publishes the next batch after the checkpoint and moves the checkpoint once every
    /// message is acknowledged; the number published. On any failure nothing moves and the same
    /// batch is published again next time (consumers drop the duplicates by event id).
    pub async fn step(&self) -> Result<usize, RelayError> {
        let result = self.publish_batch().await;
        if result.is_err() {
            match producer(&self.config) {
                Ok(fresh) => {
                    *self
                        .producer
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
                }
                Err(error) => tracing::warn!(%error, "relay: cannot recreate the producer"),
            }
        }
        result
    }

    async fn publish_batch(&self) -> Result<usize, RelayError> {
        let producer = self
            .producer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let position = checkpoint::load(&self.pool, &self.config.subscription).await?;
        let batch = log::read_after(&self.pool, position, self.config.batch).await?;
        let Some(last) = batch.last() else {
            return Ok(0);
        };
        let started = Instant::now();
        struct Outgoing {
            topic: String,
            envelope: Vec<u8>,
            event_id: String,
            correlation: String,
        }
        let outgoing = batch
            .iter()
            .map(|event| {
                Ok(Outgoing {
                    topic: topic_for(&event.aggregate_type),
                    envelope: serde_json::to_vec(&Envelope::of(event))
                        .map_err(crate::EnvelopeError::from)?,
                    event_id: event.event_id.to_string(),
                    correlation: event.metadata["correlation_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                })
            })
            .collect::<Result<Vec<_>, RelayError>>()?;
        let mut deliveries = Vec::with_capacity(batch.len());
        for (event, message) in batch.iter().zip(&outgoing) {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "event_id",
                    value: Some(&message.event_id),
                })
                .insert(Header {
                    key: "event_type",
                    value: Some(&event.event_type),
                })
                .insert(Header {
                    key: "event_version",
                    value: Some(&event.event_version),
                })
                .insert(Header {
                    key: "correlation_id",
                    value: Some(&message.correlation),
                });
            let mut record = FutureRecord::to(&message.topic)
                .key(&event.aggregate_id)
                .payload(&message.envelope)
                .headers(headers);
            // queued at once (librdkafka copies the bytes); acknowledgements are awaited below
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        record = returned;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((error, _)) => return Err(error.into()),
                }
            }
        }
        // sequentially awaited, but all are queued: the broker acknowledges them in batches
        let mut failure = None;
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => {
                    failure.get_or_insert(error);
                }
                Err(_) => {
                    failure.get_or_insert(KafkaError::Canceled);
                }
            }
        }
        if let Some(error) = failure {
            return Err(error.into());
        }
        checkpoint::save(&self.pool, &self.config.subscription, last.position).await?;
        metrics::counter!("shop_relay_published_total").increment(batch.len() as u64);
        tracing::debug!(events = batch.len(), to = %last.position, ms = started.elapsed().as_millis() as u64, "relay batch acknowledged");
        Ok(batch.len())
    }

    /// Publishes until `stop`: a broker that is down is retried with backoff (up to 5 s
    /// between attempts), the lag reported, nothing skipped.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) -> Result<(), RelayError> {
        // bounded: with the broker down the admin request would wait for its own long timeout
        match tokio::time::timeout(Duration::from_secs(5), self.ensure_topics()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "relay: cannot create topics yet; publishing anyway")
            }
            Err(_) => tracing::warn!(
                "relay: the broker did not answer the topic check; publishing anyway"
            ),
        }
        let mut backoff = Duration::from_millis(100);
        while !*stop.borrow() {
            match self.step().await {
                Ok(published) => {
                    backoff = Duration::from_millis(100);
                    set_reachable(true);
                    if published as i64 == self.config.batch {
                        continue;
                    }
                    let _ = tokio::time::timeout(Duration::from_millis(100), stop.changed()).await;
                }
                Err(error) => {
                    set_reachable(false);
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "relay: batch not acknowledged; retrying");
                    let _ = tokio::time::timeout(backoff, stop.changed()).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        Ok(())
    }
}

/// Creates the topics of every aggregate type and the dead-letter topic when missing (the relay
/// and every consumer call it, so start order does not matter).
pub async fn ensure_topics(
    brokers: &str,
    partitions: i32,
    replication: i32,
) -> Result<(), RelayError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let names: Vec<String> = schemas::AGGREGATE_TYPES
        .iter()
        .map(|t| topic_for(t))
        .chain([DEAD_LETTER_TOPIC.to_owned()])
        .collect();
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(replication)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(RelayError::Topic {
                    topic,
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}
