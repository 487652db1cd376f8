//! The PostgreSQL event store: cqrs-es's [`EventStore`] over the postgres-es `events` table.
//!
//! Why our own store and not `postgres_es::PostgresEventRepository` is in
//! `docs/adr/0001-event-store.md`. In short: one multi-row insert per command, the metadata and
//! log-position columns, snapshots that are correct (cqrs-es 0.5's snapshot modes apply a
//! command's events twice), and a command runner that reports the log position it wrote.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::time::Duration;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{
    Aggregate, AggregateContext, AggregateError, DomainEvent, EventEnvelope, EventStore,
};
use serde_json::Value;
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::error::{is_conflict, UnreadableEvent};
use crate::log::LogPosition;
use crate::metadata::EventMetadata;
use crate::upcast::{upcast, Upcaster};
use crate::{Error, Result};

/// How many times [`PgEventStore::execute`] tries a command that keeps meeting concurrent writers.
pub const MAX_ATTEMPTS: u32 = 6;

/// Snapshot policy of one aggregate type.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotPolicy {
    /// Take a snapshot once this many events were appended since the last one.
    pub every: i64,
    /// The aggregate's serialized-state format; bump it when the state's serde shape changes,
    /// and older snapshots are ignored (the stream is replayed and a new snapshot taken).
    pub version: i64,
}

/// An event store for one aggregate type.
pub struct PgEventStore<A: Aggregate> {
    pool: PgPool,
    services: A::Services,
    upcasters: &'static [Upcaster],
    snapshots: Option<SnapshotPolicy>,
    _aggregate: PhantomData<fn() -> A>,
}

/// A loaded aggregate and where its stream stands.
pub struct PgAggregateContext<A> {
    pub aggregate_id: String,
    pub aggregate: A,
    /// Sequence of the last event folded into `aggregate` (0 for a new stream).
    pub current_sequence: i64,
    /// Sequence the stored snapshot covers (0 when there is none).
    pub snapshot_sequence: i64,
}

impl<A: Aggregate> AggregateContext<A> for PgAggregateContext<A> {
    fn aggregate(&mut self) -> &mut A {
        &mut self.aggregate
    }
}

/// What a command wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandReceipt<E> {
    pub events: Vec<E>,
    /// Sequence of the stream's last event after the command.
    pub last_sequence: i64,
    /// Log position of the command's last event; `None` when it wrote nothing.
    pub position: Option<LogPosition>,
}

/// Why a command did not run.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E: std::error::Error> {
    /// The aggregate refused the command.
    #[error(transparent)]
    Domain(E),
    /// Other writers kept changing the stream; retryable by the caller.
    #[error("the stream kept changing under {attempts} attempts")]
    Conflict { attempts: u32 },
    #[error(transparent)]
    Store(#[from] Error),
}

enum AppendError {
    Conflict,
    Store(Error),
}

impl From<sqlx::Error> for AppendError {
    fn from(error: sqlx::Error) -> Self {
        if is_conflict(&error) {
            AppendError::Conflict
        } else {
            AppendError::Store(Error::Database(error))
        }
    }
}

impl<A> PgEventStore<A>
where
    A: Aggregate,
    A::Services: Default,
{
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            services: A::Services::default(),
            upcasters: &[],
            snapshots: None,
            _aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate> PgEventStore<A> {
    pub fn with_upcasters(mut self, upcasters: &'static [Upcaster]) -> Self {
        self.upcasters = upcasters;
        self
    }

    pub fn with_snapshots(mut self, policy: SnapshotPolicy) -> Self {
        self.snapshots = Some(policy);
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Loads an aggregate: from its snapshot, if any, plus the events after it.
    pub async fn load(&self, aggregate_id: &str) -> Result<PgAggregateContext<A>> {
        let mut context = PgAggregateContext {
            aggregate_id: aggregate_id.to_owned(),
            aggregate: A::default(),
            current_sequence: 0,
            snapshot_sequence: 0,
        };
        if let Some(policy) = self.snapshots {
            let row = sqlx::query(
                "SELECT last_sequence, payload FROM snapshots
                  WHERE aggregate_type = $1 AND aggregate_id = $2 AND snapshot_version = $3",
            )
            .bind(A::TYPE)
            .bind(aggregate_id)
            .bind(policy.version)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(row) = row {
                // an unreadable snapshot is not an error: the events are the truth
                match serde_json::from_value::<A>(row.get("payload")) {
                    Ok(aggregate) => {
                        context.aggregate = aggregate;
                        context.current_sequence = row.get("last_sequence");
                        context.snapshot_sequence = context.current_sequence;
                    }
                    Err(error) => tracing::warn!(
                        aggregate_type = A::TYPE,
                        aggregate_id,
                        %error,
                        "ignoring unreadable snapshot"
                    ),
                }
            }
        }
        for (sequence, event, _) in self
            .read_stream(aggregate_id, context.current_sequence)
            .await?
        {
            context.aggregate.apply(event);
            context.current_sequence = sequence;
        }
        Ok(context)
    }

    /// The stream's events after `after_sequence`, upcast and deserialized, with their metadata.
    pub async fn read_stream(
        &self,
        aggregate_id: &str,
        after_sequence: i64,
    ) -> Result<Vec<(i64, A::Event, HashMap<String, String>)>> {
        let rows = sqlx::query(
            "SELECT sequence, event_type, event_version, payload, metadata FROM events
              WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3
              ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(after_sequence)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let sequence: i64 = row.get("sequence");
                let event = self.deserialize(
                    aggregate_id,
                    sequence,
                    row.get("event_type"),
                    row.get("event_version"),
                    row.get("payload"),
                )?;
                let metadata: HashMap<String, String> =
                    serde_json::from_value(row.get("metadata")).unwrap_or_default();
                Ok((sequence, event, metadata))
            })
            .collect()
    }

    fn deserialize(
        &self,
        aggregate_id: &str,
        sequence: i64,
        event_type: String,
        event_version: String,
        payload: Value,
    ) -> Result<A::Event> {
        let failure = |reason: String| {
            Error::Deserialize(Box::new(UnreadableEvent {
                aggregate_type: A::TYPE.to_owned(),
                aggregate_id: aggregate_id.to_owned(),
                sequence,
                event_type: event_type.clone(),
                event_version: event_version.clone(),
                reason,
            }))
        };
        let (_, payload) = upcast(self.upcasters, &event_type, event_version.clone(), payload)
            .map_err(&failure)?;
        serde_json::from_value(payload).map_err(|e| failure(e.to_string()))
    }

    /// Runs a command: load, decide, append; on a concurrency conflict, reload and try again, up
    /// to [`MAX_ATTEMPTS`] times with a jittered backoff.
    pub async fn execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &EventMetadata,
    ) -> Result<CommandReceipt<A::Event>, ExecuteError<A::Error>>
    where
        A::Command: Clone,
    {
        let metadata = metadata.to_map();
        for attempt in 1..=MAX_ATTEMPTS {
            let mut context = self.load(aggregate_id).await?;
            let sink = EventSink::default();
            context
                .aggregate
                .handle(command.clone(), &self.services, &sink)
                .await
                .map_err(ExecuteError::Domain)?;
            let events = sink.collect().await;
            if events.is_empty() {
                return Ok(CommandReceipt {
                    events,
                    last_sequence: context.current_sequence,
                    position: None,
                });
            }
            match self.append(&context, &events, &metadata).await {
                Ok((last_sequence, position)) => {
                    return Ok(CommandReceipt {
                        events,
                        last_sequence,
                        position: Some(position),
                    })
                }
                Err(AppendError::Conflict) => backoff(attempt).await,
                Err(AppendError::Store(error)) => return Err(error.into()),
            }
        }
        Err(ExecuteError::Conflict {
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Appends `events` after `context.current_sequence` in one transaction, and a snapshot of
    /// `context.aggregate` when one is due. `context.aggregate` must already have the events
    /// applied (cqrs-es's `EventSink` applies them as the command writes them): they are not
    /// applied again here.
    async fn append(
        &self,
        context: &PgAggregateContext<A>,
        events: &[A::Event],
        metadata: &HashMap<String, String>,
    ) -> std::result::Result<(i64, LogPosition), AppendError> {
        let first = context.current_sequence + 1;
        let mut sequences = Vec::with_capacity(events.len());
        let mut types = Vec::with_capacity(events.len());
        let mut versions = Vec::with_capacity(events.len());
        let mut payloads = Vec::with_capacity(events.len());
        for (offset, event) in events.iter().enumerate() {
            sequences.push(first + offset as i64);
            types.push(event.event_type());
            versions.push(event.event_version());
            payloads.push(serde_json::to_value(event).map_err(|e| AppendError::Store(e.into()))?);
        }
        let last_sequence = first + events.len() as i64 - 1;
        let metadata = serde_json::to_value(metadata).map_err(|e| AppendError::Store(e.into()))?;

        let mut tx = self.pool.begin().await?;
        let position = insert_events(
            &mut tx,
            A::TYPE,
            &context.aggregate_id,
            &sequences,
            &types,
            &versions,
            &payloads,
            &metadata,
        )
        .await?;
        if let Some(policy) = self.snapshots {
            if last_sequence - context.snapshot_sequence >= policy.every {
                let state = serde_json::to_value(&context.aggregate)
                    .map_err(|e| AppendError::Store(e.into()))?;
                sqlx::query(
                    "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, snapshot_version, payload)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
                        SET last_sequence = EXCLUDED.last_sequence,
                            snapshot_version = EXCLUDED.snapshot_version,
                            payload = EXCLUDED.payload,
                            taken_at = now()
                      WHERE snapshots.last_sequence < EXCLUDED.last_sequence
                         OR snapshots.snapshot_version <> EXCLUDED.snapshot_version",
                )
                .bind(A::TYPE)
                .bind(&context.aggregate_id)
                .bind(last_sequence)
                .bind(policy.version)
                .bind(state)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok((last_sequence, position))
    }
}

/// Inserts consecutive events of one stream in one statement; returns the last one's position.
#[allow(clippy::too_many_arguments)]
async fn insert_events(
    tx: &mut Transaction<'_, Postgres>,
    aggregate_type: &str,
    aggregate_id: &str,
    sequences: &[i64],
    types: &[String],
    versions: &[String],
    payloads: &[Value],
    metadata: &Value,
) -> std::result::Result<LogPosition, sqlx::Error> {
    let row = sqlx::query(
        "WITH inserted AS (
            INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
            SELECT $1, $2, e.sequence, e.event_type, e.event_version, e.payload, $7
              FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::jsonb[])
                   WITH ORDINALITY AS e(sequence, event_type, event_version, payload, n)
             ORDER BY e.n
            RETURNING transaction_id, global_position)
         SELECT transaction_id::text::bigint AS transaction_id, global_position
           FROM inserted ORDER BY global_position DESC LIMIT 1",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(sequences)
    .bind(types)
    .bind(versions)
    .bind(payloads)
    .bind(metadata)
    .fetch_one(&mut **tx)
    .await?;
    Ok(LogPosition {
        transaction_id: row.get("transaction_id"),
        global_position: row.get("global_position"),
    })
}

/// One event of a bulk append (imports, generators, benchmarks).
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
}

/// Appends many events, of any streams, in one statement of the caller's transaction. Each
/// stream's events must be consecutive and in sequence order; the chain trigger and the primary
/// key check them as usual. Returns the number of rows written.
pub async fn append_bulk(
    tx: &mut Transaction<'_, Postgres>,
    events: &[NewEvent],
) -> std::result::Result<u64, sqlx::Error> {
    let column = |f: fn(&NewEvent) -> String| events.iter().map(f).collect::<Vec<_>>();
    let types = column(|e| e.aggregate_type.clone());
    let ids = column(|e| e.aggregate_id.clone());
    let event_types = column(|e| e.event_type.clone());
    let versions = column(|e| e.event_version.clone());
    let sequences: Vec<i64> = events.iter().map(|e| e.sequence).collect();
    let payloads: Vec<&Value> = events.iter().map(|e| &e.payload).collect();
    let metadata: Vec<&Value> = events.iter().map(|e| &e.metadata).collect();
    let done = sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload, e.metadata
           FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])
                WITH ORDINALITY AS e(aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, n)
          ORDER BY e.n",
    )
    .bind(types)
    .bind(ids)
    .bind(sequences)
    .bind(event_types)
    .bind(versions)
    .bind(payloads)
    .bind(metadata)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

async fn backoff(attempt: u32) {
    // 2, 4, 8, 16 ms ... plus up to as much again of jitter, so colliding writers spread out
    let base = 1u64 << attempt.min(8);
    let jitter = (uuid::Uuid::new_v4().as_u128() % u128::from(base)) as u64;
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

fn to_aggregate_error<E: std::error::Error>(error: Error) -> AggregateError<E> {
    match error {
        Error::Database(db) if is_conflict(&db) => AggregateError::AggregateConflict,
        Error::Database(db) => AggregateError::DatabaseConnectionError(Box::new(db)),
        Error::Deserialize(_) | Error::Serialize(_) => {
            AggregateError::DeserializationError(Box::new(error))
        }
        other => AggregateError::UnexpectedError(Box::new(other)),
    }
}

impl<A: Aggregate> EventStore<A> for PgEventStore<A> {
    type AC = PgAggregateContext<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> std::result::Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let events = self
            .read_stream(aggregate_id, 0)
            .await
            .map_err(to_aggregate_error)?;
        Ok(events
            .into_iter()
            .map(|(sequence, payload, metadata)| EventEnvelope {
                aggregate_id: aggregate_id.to_owned(),
                sequence: sequence as usize,
                payload,
                metadata,
            })
            .collect())
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> std::result::Result<Self::AC, AggregateError<A::Error>> {
        self.load(aggregate_id).await.map_err(to_aggregate_error)
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: Self::AC,
        metadata: HashMap<String, String>,
    ) -> std::result::Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        match self.append(&context, &events, &metadata).await {
            Ok(_) => Ok(events
                .into_iter()
                .enumerate()
                .map(|(offset, payload)| EventEnvelope {
                    aggregate_id: context.aggregate_id.clone(),
                    sequence: (context.current_sequence + 1 + offset as i64) as usize,
                    payload,
                    metadata: metadata.clone(),
                })
                .collect()),
            Err(AppendError::Conflict) => Err(AggregateError::AggregateConflict),
            Err(AppendError::Store(error)) => Err(to_aggregate_error(error)),
        }
    }
}
