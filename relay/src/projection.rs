//! A PostgreSQL read model fed from any [`EventSource`], exactly once in effect: the ids of the
//! events a batch applied are stored in the same transaction as its rows, so a redelivery
//! (Kafka is at least once) is recognised and skipped. Unreadable messages go to the source's
//! dead letters and the consumer moves on.

use std::collections::HashSet;

use eventlog::source::{EventSource, Poison};
use eventlog::RecordedEvent;
use projections::pg::PgProjection;
use sqlx::PgPool;
use uuid::Uuid;

use crate::RelayError;

/// Migrations of the relay's consumers (versions 400–499).
pub const MIGRATIONS: &[eventlog::migrate::Migration] = &[eventlog::migrate::Migration {
    version: 400,
    name: "consumed_events",
    sql: "CREATE TABLE consumed_events (
              subscription text        NOT NULL,
              event_id     uuid        NOT NULL,
              consumed_at  timestamptz NOT NULL DEFAULT now(),
              PRIMARY KEY (subscription, event_id));",
}];

/// A projection into `schema`, fed by a source, deduplicated under `subscription`.
pub struct KafkaProjection {
    projection: Box<dyn PgProjection>,
    schema: String,
    subscription: String,
}

impl KafkaProjection {
    /// Creates `schema` and the projection's tables when missing.
    pub async fn new(
        pool: &PgPool,
        projection: Box<dyn PgProjection>,
        schema: &str,
        subscription: &str,
    ) -> Result<KafkaProjection, RelayError> {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(schema)
                .fetch_one(pool)
                .await?;
        if !exists {
            sqlx::raw_sql(&format!(
                "CREATE SCHEMA {schema}; {}",
                projection.tables(schema)
            ))
            .execute(pool)
            .await?;
        }
        Ok(KafkaProjection {
            projection,
            schema: schema.to_owned(),
            subscription: subscription.to_owned(),
        })
    }

    /// Applies the next batch from `source`: the number of new events applied (duplicates and
    /// poison are not counted).
    pub async fn step(
        &self,
        pool: &PgPool,
        source: &mut dyn EventSource,
        limit: usize,
    ) -> Result<usize, RelayError> {
        let batch = source.next_batch(limit).await.map_err(source_error)?;
        if batch.is_empty() {
            return Ok(0);
        }
        let mut events: Vec<RecordedEvent> = Vec::with_capacity(batch.len());
        for incoming in batch {
            match incoming {
                Ok(event) => match decodable(&event) {
                    Ok(()) => events.push(event),
                    Err(reason) => {
                        let poison = Poison {
                            origin: format!(
                                "{}/{}#{}",
                                event.aggregate_type, event.aggregate_id, event.sequence
                            ),
                            bytes: serde_json::to_vec(&crate::Envelope::of(&event))
                                .unwrap_or_default(),
                            reason: reason.clone(),
                        };
                        source
                            .dead_letter(&poison, &reason)
                            .await
                            .map_err(source_error)?;
                    }
                },
                Err(poison) => {
                    let reason = poison.reason.clone();
                    source
                        .dead_letter(&poison, &reason)
                        .await
                        .map_err(source_error)?;
                }
            }
        }
        let mut tx = pool.begin().await?;
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        let seen: HashSet<Uuid> = sqlx::query_scalar(
            "SELECT event_id FROM consumed_events WHERE subscription = $1 AND event_id = ANY($2)",
        )
        .bind(&self.subscription)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let mut fresh_ids = HashSet::new();
        let fresh: Vec<RecordedEvent> = events
            .into_iter()
            .filter(|e| !seen.contains(&e.event_id) && fresh_ids.insert(e.event_id))
            .collect();
        let applied = fresh.len();
        if !fresh.is_empty() {
            self.projection.apply(&mut tx, &self.schema, &fresh).await?;
            let fresh_ids: Vec<Uuid> = fresh.iter().map(|e| e.event_id).collect();
            sqlx::query(
                "INSERT INTO consumed_events (subscription, event_id) SELECT $1, unnest($2::uuid[])",
            )
            .bind(&self.subscription)
            .bind(&fresh_ids)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        // after the commit: a crash in between redelivers, and the ids above skip it
        source.acknowledge().await.map_err(source_error)?;
        if applied < ids.len() {
            tracing::debug!(
                duplicates = ids.len() - applied,
                "redelivered events skipped"
            );
        }
        Ok(applied)
    }
}

fn decodable(event: &RecordedEvent) -> Result<(), String> {
    schemas::decode_ref(
        &event.aggregate_type,
        &event.event_type,
        &event.event_version,
        &event.payload,
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

fn source_error(error: eventlog::source::SourceError) -> RelayError {
    RelayError::Source(error.to_string())
}
