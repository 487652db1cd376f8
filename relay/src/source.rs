//! Following the event log from Kafka: a consumer group over the aggregate topics.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use eventlog::source::{EventSource, Incoming, Poison, SourceError};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::{topic_for, Envelope, RelayError, DEAD_LETTER_TOPIC};

/// Settings of a Kafka source.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    pub brokers: String,
    /// The consumer group: replicas of one consumer share it and split the partitions.
    pub group: String,
    /// The aggregate types to follow (their topics).
    pub aggregate_types: Vec<String>,
    /// How long `next_batch` waits for a first message.
    pub poll: Duration,
}

impl KafkaSource {
    /// [`KafkaSource::new`] after making sure the topics exist (6 partitions when created here;
    /// the relay creates them the same way), so a consumer may start before the relay.
    pub async fn connect(config: &SourceConfig) -> Result<KafkaSource, RelayError> {
        crate::publisher::ensure_topics(&config.brokers, 6, 1).await?;
        KafkaSource::new(config)
    }
}

/// A delivery's place, for committing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

pub struct KafkaSource {
    consumer: StreamConsumer,
    dead_letters: FutureProducer,
    poll: Duration,
    /// Highest offset read per partition, not yet committed.
    read: BTreeMap<(String, i32), i64>,
}

impl KafkaSource {
    pub fn new(config: &SourceConfig) -> Result<KafkaSource, RelayError> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // a new group starts from the beginning (and nisshi on PostgreSQL 15 cannot answer
            // "latest" anyway; see DESIGN.md)
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .create()?;
        let topics: Vec<String> = config
            .aggregate_types
            .iter()
            .map(|t| topic_for(t))
            .collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let dead_letters: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .create()?;
        Ok(KafkaSource {
            consumer,
            dead_letters,
            poll: config.poll,
            read: BTreeMap::new(),
        })
    }
}

#[async_trait]
impl EventSource for KafkaSource {
    async fn next_batch(&mut self, limit: usize) -> Result<Vec<Incoming>, SourceError> {
        let mut batch = Vec::new();
        let mut wait = self.poll;
        while batch.len() < limit {
            let message = match tokio::time::timeout(wait, self.consumer.recv()).await {
                Err(_) => break,
                Ok(Ok(message)) => message,
                // a rebalance, a topic being created, a broker moment: nothing is lost, the
                // next call reads on from the committed offsets
                Ok(Err(error)) if !batch.is_empty() => {
                    tracing::debug!(%error, "Kafka source: stopping the batch early");
                    break;
                }
                Ok(Err(error)) => return Err(Box::new(error)),
            };
            // after the first message, take what is already there and return
            wait = Duration::from_millis(5);
            let origin = format!(
                "{}/{}@{}",
                message.topic(),
                message.partition(),
                message.offset()
            );
            let bytes = message.payload().unwrap_or_default();
            let incoming = Envelope::parse(bytes)
                .and_then(Envelope::into_recorded)
                .map_err(|error| Poison {
                    origin,
                    bytes: bytes.to_vec(),
                    reason: error.to_string(),
                });
            self.read.insert(
                (message.topic().to_owned(), message.partition()),
                message.offset(),
            );
            batch.push(incoming);
        }
        Ok(batch)
    }

    async fn acknowledge(&mut self) -> Result<(), SourceError> {
        if self.read.is_empty() {
            return Ok(());
        }
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), offset) in &self.read {
            offsets.add_partition_offset(topic, *partition, Offset::Offset(offset + 1))?;
        }
        self.consumer.commit(&offsets, CommitMode::Sync)?;
        self.read.clear();
        Ok(())
    }

    async fn dead_letter(&mut self, poison: &Poison, reason: &str) -> Result<(), SourceError> {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "error",
                value: Some(reason),
            })
            .insert(Header {
                key: "origin",
                value: Some(&poison.origin),
            });
        let record = FutureRecord::to(DEAD_LETTER_TOPIC)
            .key(&poison.origin)
            .payload(&poison.bytes)
            .headers(headers);
        self.dead_letters
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(error, _)| Box::new(error) as SourceError)?;
        metrics::counter!("shop_dead_letters_total").increment(1);
        tracing::warn!(origin = %poison.origin, reason, "message sent to the dead-letter topic");
        Ok(())
    }
}
