//! The PostgreSQL event store: cqrs-es's [`EventStore`] over the postgres-es `events` table.
//!
//! Why our own store and not `postgres_es::PostgresEventRepository` is in
//! `docs/adr/0001-event-store.md`. In short: one multi-row insert per command, the metadata and
//! log-position columns, snapshots that are correct (cqrs-es 0.5's snapshot modes apply a
//! command's events twice), and a command runner that reports the log position it wrote.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{
    Aggregate, AggregateContext, AggregateError, DomainEvent, EventEnvelope, EventStore,
};
use serde_json::Value;
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::codec::PayloadCodec;
use crate::combine::StreamQueues;
use crate::error::{is_conflict, UnreadableEvent};
use crate::group::GroupCommitter;
use crate::hash::{chain_hash, jsonb_text, truncate_to_micros, HashedFields, GENESIS};
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
    pub(crate) pool: PgPool,
    pub(crate) services: A::Services,
    upcasters: &'static [Upcaster],
    snapshots: Option<SnapshotPolicy>,
    /// Where streams this process wrote stand now, so the next command on a hot stream reads
    /// only what changed since (usually nothing) instead of the whole stream. Never trusted
    /// blindly: the events after the cached sequence are always read.
    pub(crate) cache: Arc<StreamCache<A>>,
    /// Commands on one stream take turns within this process instead of colliding (and
    /// retrying); streams are spread over these by a hash of their id. (Owned, so a unit of
    /// work, [`crate::unit`], can hold turns of several stores until it is written.)
    pub(crate) turns: Vec<Arc<tokio::sync::Mutex<()>>>,
    /// Where appends go: the process's group committer for this pool (shared with every other
    /// store on it), or `None` for one statement per command.
    pub(crate) group: Option<Arc<GroupCommitter>>,
    /// Commands waiting for a stream that has a command in hand (see [`crate::combine`]).
    pub(crate) queues: StreamQueues<A>,
    /// Whether a command on a stream that is not in the cache is first decided as on a new
    /// stream, without a read (the append of sequence 1 verifies it), or after reading it.
    pub(crate) unknown_streams_are_new: bool,
    /// Between the events' domain form and their stored form (see [`crate::codec`]).
    codec: Option<Arc<dyn PayloadCodec>>,
}

/// Where the streams this process wrote or read stand (see [`PgEventStore`]'s `cache`), and the
/// streams a unit of work found changed under it (read before they are trusted again).
pub(crate) struct StreamCache<A: Aggregate> {
    streams: std::sync::Mutex<HashMap<String, PgAggregateContext<A>>>,
    /// Streams whose write was refused in a unit of work ([`crate::unit`]): the next unit reads
    /// them instead of guessing them new (a guess that is refused again would be retried
    /// forever).
    suspect: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl<A: Aggregate> Default for StreamCache<A> {
    fn default() -> Self {
        Self {
            streams: std::sync::Mutex::new(HashMap::new()),
            suspect: std::sync::Mutex::new(std::collections::HashSet::new()),
        }
    }
}

impl<A: Aggregate> StreamCache<A> {
    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<String, PgAggregateContext<A>>> {
        self.streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn suspects(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.suspect
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn get(&self, aggregate_id: &str) -> Option<PgAggregateContext<A>>
    where
        A: Clone,
    {
        self.streams()
            .get(aggregate_id)
            .map(PgAggregateContext::duplicate)
    }

    pub(crate) fn remember(&self, context: PgAggregateContext<A>) {
        self.suspects().remove(&context.aggregate_id);
        let mut cache = self.streams();
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(context.aggregate_id.clone(), context);
    }

    pub(crate) fn forget(&self, aggregate_id: &str) {
        self.streams().remove(aggregate_id);
    }

    /// Forgets the stream and marks it to be read before it is decided on in a unit again.
    pub(crate) fn distrust(&self, aggregate_id: &str) {
        self.forget(aggregate_id);
        let mut suspects = self.suspects();
        if suspects.len() >= CACHE_CAPACITY {
            suspects.clear();
        }
        suspects.insert(aggregate_id.to_owned());
    }

    pub(crate) fn is_suspect(&self, aggregate_id: &str) -> bool {
        self.suspects().contains(aggregate_id)
    }
}

/// Streams kept in [`PgEventStore`]'s cache before it is emptied.
const CACHE_CAPACITY: usize = 10_000;
/// Turn-taking shards. Many, because a command holds its shard until its append is written
/// (with group commit, until its group is): commands on two streams of one shard wait for each
/// other, and with 64 shards one in four of 16 concurrent commands did.
const TURNS: usize = 1024;

/// A loaded aggregate and where its stream stands.
pub struct PgAggregateContext<A: Aggregate> {
    pub aggregate_id: String,
    pub aggregate: A,
    /// Sequence of the last event folded into `aggregate` (0 for a new stream).
    pub current_sequence: i64,
    /// Sequence the stored snapshot covers (0 when there is none).
    pub snapshot_sequence: i64,
    /// Hash of the event at `current_sequence` (the chain's genesis for a new stream).
    pub last_hash: Vec<u8>,
    /// Transaction id of the event at `current_sequence` (0 for a new stream).
    pub last_transaction_id: i64,
    /// The latest loaded events with the command that wrote them, newest last (at most
    /// [`DEDUP_WINDOW`]): a command id found here already ran.
    pub(crate) recent: VecDeque<Recent<A::Event>>,
}

/// How many of a stream's latest events are checked for an already-executed command id.
pub const DEDUP_WINDOW: usize = 64;

pub(crate) struct Recent<E> {
    command_id: Option<String>,
    pub(crate) sequence: i64,
    pub(crate) position: LogPosition,
    event: E,
}

impl<A: Aggregate> PgAggregateContext<A> {
    /// A stream without events.
    pub(crate) fn new_stream(aggregate_id: &str) -> Self {
        Self {
            aggregate_id: aggregate_id.to_owned(),
            aggregate: A::default(),
            current_sequence: 0,
            snapshot_sequence: 0,
            last_hash: GENESIS.to_vec(),
            last_transaction_id: 0,
            recent: VecDeque::new(),
        }
    }

    pub(crate) fn remember(
        &mut self,
        command_id: Option<String>,
        sequence: i64,
        position: LogPosition,
        event: &A::Event,
    ) {
        if self.recent.len() == DEDUP_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(Recent {
            command_id,
            sequence,
            position,
            event: event.clone(),
        });
    }

    /// What an earlier run of `command_id` on this stream wrote, if it is in the dedup window.
    pub(crate) fn earlier_run(&self, command_id: &str) -> Option<CommandReceipt<A::Event>> {
        let runs: Vec<&Recent<A::Event>> = self
            .recent
            .iter()
            .filter(|r| r.command_id.as_deref() == Some(command_id))
            .collect();
        let last = runs.last()?;
        Some(CommandReceipt {
            events: runs.iter().map(|r| r.event.clone()).collect(),
            last_sequence: last.sequence,
            position: Some(last.position),
            replayed: true,
        })
    }
}

/// Why the application refused to run a command on the state it found (checked by
/// [`PgEventStore::execute_if`] against the freshly loaded aggregate, on every attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
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
    /// `true` when the command id had already run on this stream: nothing new was written and
    /// `events`/`position` are those of the earlier run.
    pub replayed: bool,
}

/// Why a command did not run.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E: std::error::Error> {
    /// The aggregate refused the command.
    #[error(transparent)]
    Domain(E),
    /// The caller's precondition refused the loaded state.
    #[error(transparent)]
    Refused(Refusal),
    /// Other writers kept changing the stream; retryable by the caller.
    #[error("the stream kept changing under {attempts} attempts")]
    Conflict { attempts: u32 },
    #[error(transparent)]
    Store(#[from] Error),
}

/// A database error, with the conflicts a retry resolves told apart.
pub(crate) fn classify(error: sqlx::Error) -> Error {
    if is_conflict(&error) {
        Error::Conflict
    } else {
        Error::Database(error)
    }
}

impl<A> PgEventStore<A>
where
    A: Aggregate,
    A::Services: Default,
{
    /// A store whose appends share transactions with the other commands of this process on the
    /// same pool (group commit, [`GroupCommitter::for_pool`]).
    pub fn new(pool: PgPool) -> Self {
        Self {
            group: Some(GroupCommitter::for_pool(&pool)),
            unknown_streams_are_new: true,
            codec: None,
            pool,
            services: A::Services::default(),
            upcasters: &[],
            snapshots: None,
            cache: Arc::new(StreamCache::default()),
            turns: (0..TURNS)
                .map(|_| Arc::new(tokio::sync::Mutex::new(())))
                .collect(),
            queues: StreamQueues::default(),
        }
    }
}

impl<A: Aggregate> PgEventStore<A> {
    pub fn with_upcasters(mut self, upcasters: &'static [Upcaster]) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// Passes every payload through `codec` on its way into and out of the table (see
    /// [`crate::codec`]). Snapshots hold the aggregate's own state: do not give snapshots to an
    /// aggregate type whose events the codec seals.
    pub fn with_codec(mut self, codec: Arc<dyn PayloadCodec>) -> Self {
        self.codec = Some(codec);
        self
    }

    pub fn with_snapshots(mut self, policy: SnapshotPolicy) -> Self {
        self.snapshots = Some(policy);
        self
    }

    /// Appends through `committer` instead of the process's default one for the pool (a
    /// committer of its own settings; it must write to the same database as the store reads).
    pub fn with_group_committer(mut self, committer: Arc<GroupCommitter>) -> Self {
        self.group = Some(committer);
        self
    }

    /// Each command's append in a statement and transaction of its own (no group commit).
    pub fn without_group_commit(mut self) -> Self {
        self.group = None;
        self
    }

    /// Reads a stream that is not in the cache before deciding a command on it, instead of
    /// deciding as on a new stream first. (Decided as new, a command that creates a stream needs
    /// no read; one on a stream that exists but is not cached pays a refused append before it
    /// reads, unless the empty aggregate rejects it outright — which most commands but creates
    /// do.)
    pub fn reading_unknown_streams(mut self) -> Self {
        self.unknown_streams_are_new = false;
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Loads an aggregate: from its snapshot, if any, plus the events after it.
    pub async fn load(&self, aggregate_id: &str) -> Result<PgAggregateContext<A>> {
        let mut context = PgAggregateContext::new_stream(aggregate_id);
        if let Some(policy) = self.snapshots {
            let row = sqlx::query(
                "SELECT last_sequence, last_hash, last_transaction_id, payload FROM snapshots
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
                        context.last_hash = row.get("last_hash");
                        context.last_transaction_id = row.get("last_transaction_id");
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
        // From a snapshot, the dedup window still covers the events the snapshot folded in: read
        // them too (in the same query), to remember their command ids, without applying them.
        let window = if context.snapshot_sequence > 0 {
            DEDUP_WINDOW as i64
        } else {
            0
        };
        self.catch_up(&mut context, window).await?;
        Ok(context)
    }

    /// Folds the events stored after `context.current_sequence` into it. The `window` events up
    /// to `context.current_sequence` (already in the aggregate) are read as well, only to be
    /// remembered in the dedup window.
    async fn catch_up(&self, context: &mut PgAggregateContext<A>, window: i64) -> Result<()> {
        let after = (context.current_sequence - window).max(0);
        for stored in self.fetch(&context.aggregate_id, after).await? {
            context.remember(
                stored.metadata.get("command_id").cloned(),
                stored.sequence,
                stored.position,
                &stored.event,
            );
            if stored.sequence <= context.current_sequence {
                continue; // folded into the snapshot already
            }
            context.aggregate.apply(stored.event);
            context.current_sequence = stored.sequence;
            context.last_hash = stored.hash;
            context.last_transaction_id = stored.position.transaction_id;
        }
        Ok(())
    }

    /// The stream's events after `after_sequence`, upcast and deserialized, with their metadata.
    pub async fn read_stream(
        &self,
        aggregate_id: &str,
        after_sequence: i64,
    ) -> Result<Vec<(i64, A::Event, HashMap<String, String>)>> {
        Ok(self
            .fetch(aggregate_id, after_sequence)
            .await?
            .into_iter()
            .map(|stored| (stored.sequence, stored.event, stored.metadata))
            .collect())
    }

    async fn fetch(
        &self,
        aggregate_id: &str,
        after_sequence: i64,
    ) -> Result<Vec<Stored<A::Event>>> {
        let rows = sqlx::query(
            "SELECT sequence, event_type, event_version, payload, metadata, hash,
                    transaction_id::text::bigint AS transaction_id, global_position
               FROM events
              WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3
              ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .bind(after_sequence)
        .fetch_all(&self.pool)
        .await?;
        let mut stored = Vec::with_capacity(rows.len());
        for row in rows {
            let sequence: i64 = row.get("sequence");
            let event_type: String = row.get("event_type");
            let mut payload: Value = row.get("payload");
            if let Some(codec) = &self.codec {
                codec
                    .decode(A::TYPE, aggregate_id, &event_type, &mut payload)
                    .await
                    .map_err(Error::Codec)?;
            }
            let event = self.deserialize(
                aggregate_id,
                sequence,
                event_type,
                row.get("event_version"),
                payload,
            )?;
            stored.push(Stored {
                sequence,
                event,
                metadata: serde_json::from_value(row.get("metadata")).unwrap_or_default(),
                hash: row.get("hash"),
                position: LogPosition {
                    transaction_id: row.get("transaction_id"),
                    global_position: row.get("global_position"),
                },
            });
        }
        Ok(stored)
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
    /// to [`MAX_ATTEMPTS`] times with a jittered backoff. A command whose `command_id` already
    /// ran on this stream (a retry after a lost response, a saga step replayed after a crash)
    /// writes nothing and returns the earlier run's receipt. Commands that queue on a stream
    /// with a command in hand are decided one after another and written in one transaction
    /// (with group commit, see [`crate::combine`]), each with its own answer.
    ///
    /// Every outcome is counted (`shop_commands_total{aggregate, outcome}`) and every appended
    /// event (`shop_events_appended_total{aggregate, event_type}`).
    pub async fn execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &EventMetadata,
    ) -> Result<CommandReceipt<A::Event>, ExecuteError<A::Error>>
    where
        A: Clone + 'static,
        A::Command: Clone,
    {
        let result = if self.group.is_some() {
            self.run_combined(aggregate_id, command, metadata).await
        } else {
            self.run_command(aggregate_id, command, metadata, |_| Ok(()))
                .await
        };
        self.counted(result)
    }

    /// [`execute`](Self::execute), after `precondition` accepted the loaded aggregate (who may
    /// touch it, whether it exists for this caller); run on its own, not in a stream's batch.
    pub async fn execute_if(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &EventMetadata,
        precondition: impl Fn(&A) -> std::result::Result<(), Refusal>,
    ) -> Result<CommandReceipt<A::Event>, ExecuteError<A::Error>>
    where
        A: Clone,
        A::Command: Clone,
    {
        self.counted(
            self.run_command(aggregate_id, command, metadata, precondition)
                .await,
        )
    }

    /// Counts a command's outcome and the events it appended.
    fn counted(
        &self,
        result: Result<CommandReceipt<A::Event>, ExecuteError<A::Error>>,
    ) -> Result<CommandReceipt<A::Event>, ExecuteError<A::Error>> {
        let outcome = match &result {
            Ok(receipt) if receipt.replayed => "replayed",
            Ok(receipt) if receipt.position.is_none() => "unchanged",
            Ok(_) => "ok",
            Err(ExecuteError::Domain(_)) => "rejected",
            Err(ExecuteError::Refused(_)) => "refused",
            Err(ExecuteError::Conflict { .. }) => "conflict",
            Err(ExecuteError::Store(_)) => "error",
        };
        metrics::counter!("shop_commands_total", "aggregate" => A::TYPE, "outcome" => outcome)
            .increment(1);
        if let Ok(receipt) = &result {
            if !receipt.replayed {
                for event in &receipt.events {
                    metrics::counter!(
                        "shop_events_appended_total",
                        "aggregate" => A::TYPE,
                        "event_type" => event.event_type()
                    )
                    .increment(1);
                }
            }
        }
        result
    }

    pub(crate) async fn run_command(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &EventMetadata,
        precondition: impl Fn(&A) -> std::result::Result<(), Refusal>,
    ) -> Result<CommandReceipt<A::Event>, ExecuteError<A::Error>>
    where
        A: Clone,
        A::Command: Clone,
    {
        let command_id = metadata.command_id.clone();
        let metadata = metadata.to_map();
        let _turn = self.turns[self.shard(aggregate_id)].lock().await;
        // First from the cache as it stands, without a read: if the stream moved meanwhile (another
        // process wrote), the append's sequence check refuses and the next attempt reads what
        // changed. An answer that writes nothing (a refusal, a rejection, a no-op) has no append
        // to check it, so it is given only after the stream was read up to date.
        // A stream this store does not know is decided as a new one (`guessed`), checked the same
        // way: the append of its first sequence fails if the stream exists.
        let mut trusted = match self.cached(aggregate_id) {
            Some(context) => Some((context, false)),
            None if self.unknown_streams_are_new => {
                Some((PgAggregateContext::new_stream(aggregate_id), true))
            }
            None => None,
        };
        for attempt in 1..=MAX_ATTEMPTS {
            let (mut context, verified, guessed) = match trusted.take() {
                Some((context, guessed)) => (context, false, guessed),
                None => (self.load_cached(aggregate_id).await?, true, false),
            };
            let decided = async {
                precondition(&context.aggregate).map_err(ExecuteError::Refused)?;
                if let Some(receipt) = context.earlier_run(&command_id) {
                    return Ok(Decision::RanBefore(receipt));
                }
                let sink = EventSink::default();
                context
                    .aggregate
                    .handle(command.clone(), &self.services, &sink)
                    .await
                    .map_err(ExecuteError::Domain)?;
                Ok(Decision::Write(sink.collect().await))
            }
            .await;
            let events = match decided {
                // an earlier run of this command, seen in the stream: its receipt, verified or not
                Ok(Decision::RanBefore(receipt)) => return Ok(receipt),
                Ok(Decision::Write(events)) if !events.is_empty() => events,
                _ if !verified => continue, // read the stream and decide again
                Ok(Decision::Write(events)) => {
                    return Ok(CommandReceipt {
                        events,
                        last_sequence: context.current_sequence,
                        position: None,
                        replayed: false,
                    })
                }
                Err(error) => return Err(error),
            };
            match self.append(&context, &events, &metadata).await {
                Ok(appended) => {
                    for (offset, event) in events.iter().enumerate() {
                        let sequence = context.current_sequence + 1 + offset as i64;
                        context.remember(
                            Some(command_id.clone()),
                            sequence,
                            appended.position,
                            event,
                        );
                    }
                    context.current_sequence = appended.last_sequence;
                    context.last_hash = appended.last_hash;
                    context.last_transaction_id = appended.position.transaction_id;
                    if appended.snapshot_taken {
                        context.snapshot_sequence = appended.last_sequence;
                    }
                    self.remember(context);
                    return Ok(CommandReceipt {
                        events,
                        last_sequence: appended.last_sequence,
                        position: Some(appended.position),
                        replayed: false,
                    });
                }
                Err(Error::Conflict) => {
                    self.forget(aggregate_id);
                    // a stream guessed new that is not: read it at once, nobody to wait for
                    if !guessed {
                        backoff(attempt).await
                    }
                }
                Err(error) => {
                    self.forget(aggregate_id);
                    return Err(error.into());
                }
            }
        }
        Err(ExecuteError::Conflict {
            attempts: MAX_ATTEMPTS,
        })
    }

    pub(crate) fn shard(&self, aggregate_id: &str) -> usize {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        aggregate_id.hash(&mut hasher);
        (hasher.finish() % self.turns.len() as u64) as usize
    }

    /// The aggregate as it stands now, reading only what changed since this store last wrote or
    /// read it (the cache), or the whole stream when it has not.
    pub async fn load_latest(&self, aggregate_id: &str) -> Result<PgAggregateContext<A>>
    where
        A: Clone,
    {
        let context = self.load_cached(aggregate_id).await?;
        if context.current_sequence > 0 {
            self.remember(context.duplicate());
        }
        Ok(context)
    }

    /// The stream as this store last wrote or read it, if it is in the cache (not read again).
    pub(crate) fn cached(&self, aggregate_id: &str) -> Option<PgAggregateContext<A>>
    where
        A: Clone,
    {
        self.cache.get(aggregate_id)
    }

    /// The stream from the cache, brought up to date; or loaded from scratch.
    pub(crate) async fn load_cached(&self, aggregate_id: &str) -> Result<PgAggregateContext<A>>
    where
        A: Clone,
    {
        let cached = self.cache.get(aggregate_id);
        match cached {
            Some(mut context) => {
                self.catch_up(&mut context, 0).await?;
                Ok(context)
            }
            None => self.load(aggregate_id).await,
        }
    }

    fn remember(&self, context: PgAggregateContext<A>) {
        self.cache.remember(context);
    }

    fn forget(&self, aggregate_id: &str) {
        self.cache.forget(aggregate_id);
    }

    /// Appends `events` after `context.current_sequence`, with a snapshot of `context.aggregate`
    /// when one is due: through the process's group committer (one transaction shared with other
    /// commands, see [`crate::group`]) or in one statement of its own (so one round trip and one
    /// implicit transaction) when the store has no committer or a snapshot is due.
    /// `context.aggregate` must already have the events applied (cqrs-es's `EventSink` applies
    /// them as the command writes them): they are not applied again here.
    async fn append(
        &self,
        context: &PgAggregateContext<A>,
        events: &[A::Event],
        metadata: &HashMap<String, String>,
    ) -> Result<Appended> {
        let payloads = self.stored_payloads(&context.aggregate_id, events).await?;
        let prepared = self.prepare(context, events, payloads, metadata)?;
        let last_sequence = context.current_sequence + events.len() as i64;
        let last_hash = prepared
            .columns
            .hashes
            .last()
            .cloned()
            .unwrap_or_else(|| context.last_hash.clone());
        let snapshot_taken = prepared.snapshot.is_some();
        let position = match &self.group {
            Some(group) if !snapshot_taken => group.append(prepared).await?,
            _ => append_alone(&self.pool, &prepared).await?,
        };
        Ok(Appended {
            last_sequence,
            last_hash,
            snapshot_taken,
            position,
        })
    }

    /// The events' stored forms (through the codec, if any), in order.
    pub(crate) async fn stored_payloads(
        &self,
        aggregate_id: &str,
        events: &[A::Event],
    ) -> Result<Vec<Value>> {
        let mut payloads = Vec::with_capacity(events.len());
        for event in events {
            let mut payload = serde_json::to_value(event)?;
            if let Some(codec) = &self.codec {
                codec
                    .encode(A::TYPE, aggregate_id, &event.event_type(), &mut payload)
                    .await
                    .map_err(Error::Codec)?;
            }
            payloads.push(payload);
        }
        Ok(payloads)
    }

    /// The rows of an append: each event's sequence, id and hash chained from the stream's head
    /// as `context` knows it, and the snapshot when one is due. `payloads` are the events' stored
    /// forms, in order.
    pub(crate) fn prepare(
        &self,
        context: &PgAggregateContext<A>,
        events: &[A::Event],
        payloads: Vec<Value>,
        metadata: &HashMap<String, String>,
    ) -> Result<PreparedAppend> {
        let metadata = serde_json::to_value(metadata)?;
        let metadata_text = jsonb_text(&metadata)?;
        let recorded_at = truncate_to_micros(Utc::now());
        let mut columns = Columns::with_capacity(events.len());
        let mut prev_hash = context.last_hash.clone();
        for (offset, (event, payload)) in events.iter().zip(payloads).enumerate() {
            let sequence = context.current_sequence + 1 + offset as i64;
            let (event_type, event_version) = (event.event_type(), event.event_version());
            let event_id = Uuid::now_v7();
            let hash = chain_hash(
                &prev_hash,
                &HashedFields {
                    aggregate_type: A::TYPE,
                    aggregate_id: &context.aggregate_id,
                    sequence,
                    event_type: &event_type,
                    event_version: &event_version,
                    payload: &jsonb_text(&payload)?,
                    metadata: &metadata_text,
                    event_id,
                    recorded_at_micros: recorded_at.timestamp_micros(),
                },
            )
            .to_vec();
            columns.push(
                sequence,
                event_type,
                event_version,
                payload,
                event_id,
                &prev_hash,
                &hash,
            );
            prev_hash = hash;
        }
        let last_sequence = context.current_sequence + events.len() as i64;
        let snapshot = match self.snapshots {
            Some(policy) if last_sequence - context.snapshot_sequence >= policy.every => {
                Some(SnapshotRow {
                    last_sequence,
                    last_hash: prev_hash,
                    version: policy.version,
                    state: serde_json::to_value(&context.aggregate)?,
                })
            }
            _ => None,
        };
        Ok(PreparedAppend {
            aggregate_type: A::TYPE,
            aggregate_id: context.aggregate_id.clone(),
            metadata,
            recorded_at,
            last_transaction_id: context.last_transaction_id,
            columns,
            snapshot,
        })
    }
}

/// One command's append, ready to be written: what [`PgEventStore`] prepared from the stream's
/// head as it knew it. Written alone ([`append_alone`]) or in a group ([`crate::group`]).
pub(crate) struct PreparedAppend {
    pub(crate) aggregate_type: &'static str,
    pub(crate) aggregate_id: String,
    pub(crate) metadata: Value,
    pub(crate) recorded_at: DateTime<Utc>,
    /// Transaction id of the stream's last event (0 for a new stream), for the xid-order guard.
    pub(crate) last_transaction_id: i64,
    pub(crate) columns: Columns,
    pub(crate) snapshot: Option<SnapshotRow>,
}

/// A snapshot written with an append.
pub(crate) struct SnapshotRow {
    pub(crate) last_sequence: i64,
    pub(crate) last_hash: Vec<u8>,
    pub(crate) version: i64,
    pub(crate) state: Value,
}

/// Writes one command's append in one statement of its own (one round trip, one implicit
/// transaction). [`Error::Conflict`] when another writer took a sequence first or the xid-order
/// guard refused.
pub(crate) async fn append_alone(pool: &PgPool, append: &PreparedAppend) -> Result<LogPosition> {
    let sql = if append.snapshot.is_some() {
        APPEND_WITH_SNAPSHOT
    } else {
        APPEND
    };
    let columns = &append.columns;
    let mut query = sqlx::query(sql)
        .bind(append.aggregate_type)
        .bind(&append.aggregate_id)
        .bind(&columns.sequences)
        .bind(&columns.event_types)
        .bind(&columns.event_versions)
        .bind(&columns.payloads)
        .bind(&append.metadata)
        .bind(append.recorded_at)
        .bind(&columns.event_ids)
        .bind(&columns.prev_hashes)
        .bind(&columns.hashes)
        .bind(append.last_transaction_id);
    if let Some(snapshot) = &append.snapshot {
        query = query
            .bind(snapshot.last_sequence)
            .bind(&snapshot.last_hash)
            .bind(snapshot.version)
            .bind(&snapshot.state);
    }
    let row = query.fetch_optional(pool).await.map_err(classify)?;
    // no row: the xid-order guard refused the append (see ARCHITECTURE.md); retry
    let row = row.ok_or(Error::Conflict)?;
    Ok(LogPosition {
        transaction_id: row.get("transaction_id"),
        global_position: row.get("global_position"),
    })
}

/// What a command decided on the stream it saw.
enum Decision<E> {
    /// The command ran before: that run's receipt.
    RanBefore(CommandReceipt<E>),
    /// These events (none: nothing to change).
    Write(Vec<E>),
}

/// What an append wrote.
struct Appended {
    last_sequence: i64,
    last_hash: Vec<u8>,
    position: LogPosition,
    snapshot_taken: bool,
}

impl<A: Aggregate + Clone> PgAggregateContext<A> {
    pub(crate) fn duplicate(&self) -> Self {
        Self {
            aggregate_id: self.aggregate_id.clone(),
            aggregate: self.aggregate.clone(),
            current_sequence: self.current_sequence,
            snapshot_sequence: self.snapshot_sequence,
            last_hash: self.last_hash.clone(),
            last_transaction_id: self.last_transaction_id,
            recent: self
                .recent
                .iter()
                .map(|r| Recent {
                    command_id: r.command_id.clone(),
                    sequence: r.sequence,
                    position: r.position,
                    event: r.event.clone(),
                })
                .collect(),
        }
    }
}

/// One stored event of a stream, with what the next append needs to know of it.
struct Stored<E> {
    sequence: i64,
    event: E,
    metadata: HashMap<String, String>,
    hash: Vec<u8>,
    position: LogPosition,
}

/// The per-event columns of an append, as arrays for `UNNEST`.
#[derive(Default)]
pub(crate) struct Columns {
    pub(crate) sequences: Vec<i64>,
    pub(crate) event_types: Vec<String>,
    pub(crate) event_versions: Vec<String>,
    pub(crate) payloads: Vec<Value>,
    pub(crate) event_ids: Vec<Uuid>,
    pub(crate) prev_hashes: Vec<Vec<u8>>,
    pub(crate) hashes: Vec<Vec<u8>>,
}

impl Columns {
    fn with_capacity(n: usize) -> Self {
        Self {
            sequences: Vec::with_capacity(n),
            event_types: Vec::with_capacity(n),
            event_versions: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            event_ids: Vec::with_capacity(n),
            prev_hashes: Vec::with_capacity(n),
            hashes: Vec::with_capacity(n),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        sequence: i64,
        event_type: String,
        event_version: String,
        payload: Value,
        event_id: Uuid,
        prev_hash: &[u8],
        hash: &[u8],
    ) {
        self.sequences.push(sequence);
        self.event_types.push(event_type);
        self.event_versions.push(event_version);
        self.payloads.push(payload);
        self.event_ids.push(event_id);
        self.prev_hashes.push(prev_hash.to_vec());
        self.hashes.push(hash.to_vec());
    }
}

/// One command's events in one statement. `$12` is the transaction id of the stream's previous
/// event: an append from a transaction with an older xid is refused (no row comes back), because
/// the log order would then contradict the stream order. An append whose first sequence is
/// taken (a stale cache, a stream guessed new) is refused the same way, without an error; one
/// that races a write not yet committed still fails on the stream key.
const APPEND: &str = "
    WITH inserted AS (
        INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                            payload, metadata, recorded_at, event_id, prev_hash, hash)
        SELECT $1, $2, e.sequence, e.event_type, e.event_version, e.payload, $7, $8, e.event_id,
               e.prev_hash, e.hash
          FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::jsonb[], $9::uuid[], $10::bytea[], $11::bytea[])
               WITH ORDINALITY AS e(sequence, event_type, event_version, payload, event_id, prev_hash, hash, n)
         WHERE pg_current_xact_id() >= $12::bigint::text::xid8
           AND NOT EXISTS (SELECT 1 FROM events h
                            WHERE h.aggregate_type = $1 AND h.aggregate_id = $2
                              AND h.sequence = ($3::bigint[])[1])
         ORDER BY e.n
        RETURNING transaction_id, global_position)
    SELECT transaction_id::text::bigint AS transaction_id, global_position
      FROM inserted ORDER BY global_position DESC LIMIT 1";

/// [`APPEND`], plus the aggregate's snapshot in the same statement.
const APPEND_WITH_SNAPSHOT: &str = "
    WITH inserted AS (
        INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                            payload, metadata, recorded_at, event_id, prev_hash, hash)
        SELECT $1, $2, e.sequence, e.event_type, e.event_version, e.payload, $7, $8, e.event_id,
               e.prev_hash, e.hash
          FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::jsonb[], $9::uuid[], $10::bytea[], $11::bytea[])
               WITH ORDINALITY AS e(sequence, event_type, event_version, payload, event_id, prev_hash, hash, n)
         WHERE pg_current_xact_id() >= $12::bigint::text::xid8
           AND NOT EXISTS (SELECT 1 FROM events h
                            WHERE h.aggregate_type = $1 AND h.aggregate_id = $2
                              AND h.sequence = ($3::bigint[])[1])
         ORDER BY e.n
        RETURNING transaction_id, global_position),
    snapshot AS (
        INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, last_hash,
                               last_transaction_id, snapshot_version, payload)
        SELECT $1, $2, $13, $14, (SELECT transaction_id::text::bigint FROM inserted LIMIT 1), $15, $16
         WHERE EXISTS (SELECT 1 FROM inserted)
        ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
           SET last_sequence = EXCLUDED.last_sequence,
               last_hash = EXCLUDED.last_hash,
               last_transaction_id = EXCLUDED.last_transaction_id,
               snapshot_version = EXCLUDED.snapshot_version,
               payload = EXCLUDED.payload,
               taken_at = now()
         WHERE snapshots.last_sequence < EXCLUDED.last_sequence
            OR snapshots.snapshot_version <> EXCLUDED.snapshot_version)
    SELECT transaction_id::text::bigint AS transaction_id, global_position
      FROM inserted ORDER BY global_position DESC LIMIT 1";

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

/// Appends many events, of any streams, in one statement of the caller's transaction, chaining
/// each stream onto its stored head. Each stream's events must be consecutive and in sequence
/// order. Returns the number of rows written; [`Error::Conflict`] when another writer got to a
/// stream first (retry in a new transaction).
pub async fn append_bulk(tx: &mut Transaction<'_, Postgres>, events: &[NewEvent]) -> Result<u64> {
    // the stored head of every stream that does not start in this batch
    let mut continued: Vec<(&str, &str, i64)> = Vec::new();
    let mut previous: Option<&NewEvent> = None;
    for event in events {
        let same_stream = previous.is_some_and(|p| {
            p.aggregate_type == event.aggregate_type && p.aggregate_id == event.aggregate_id
        });
        if same_stream {
            if event.sequence != previous.map_or(0, |p| p.sequence) + 1 {
                return Err(Error::InvalidAppend(format!(
                    "{}/{} jumps to sequence {}",
                    event.aggregate_type, event.aggregate_id, event.sequence
                )));
            }
        } else if event.sequence > 1 {
            continued.push((
                &event.aggregate_type,
                &event.aggregate_id,
                event.sequence - 1,
            ));
        } else if event.sequence < 1 {
            return Err(Error::InvalidAppend("sequences start at 1".into()));
        }
        previous = Some(event);
    }
    let mut heads: HashMap<(String, String), Vec<u8>> = HashMap::new();
    if !continued.is_empty() {
        let rows = sqlx::query(
            "SELECT h.aggregate_type, h.aggregate_id, e.hash,
                    e.transaction_id <= pg_current_xact_id() AS ordered
               FROM UNNEST($1::text[], $2::text[], $3::bigint[]) AS h(aggregate_type, aggregate_id, sequence)
               JOIN events e USING (aggregate_type, aggregate_id, sequence)",
        )
        .bind(continued.iter().map(|c| c.0).collect::<Vec<_>>())
        .bind(continued.iter().map(|c| c.1).collect::<Vec<_>>())
        .bind(continued.iter().map(|c| c.2).collect::<Vec<_>>())
        .fetch_all(&mut **tx)
        .await
        .map_err(classify)?;
        for row in rows {
            if !row.get::<bool, _>("ordered") {
                return Err(Error::Conflict);
            }
            heads.insert(
                (row.get("aggregate_type"), row.get("aggregate_id")),
                row.get("hash"),
            );
        }
        if let Some((aggregate_type, aggregate_id, sequence)) = continued
            .iter()
            .find(|c| !heads.contains_key(&(c.0.to_owned(), c.1.to_owned())))
        {
            return Err(Error::InvalidAppend(format!(
                "{aggregate_type}/{aggregate_id} has no event {sequence} to follow"
            )));
        }
    }

    let recorded_at = truncate_to_micros(Utc::now());
    let mut columns = Columns::with_capacity(events.len());
    let mut prev_hash = GENESIS.to_vec();
    for event in events {
        if event.sequence == 1 {
            prev_hash = GENESIS.to_vec();
        } else if let Some(head) =
            heads.remove(&(event.aggregate_type.clone(), event.aggregate_id.clone()))
        {
            prev_hash = head;
        }
        let event_id = Uuid::now_v7();
        let hash = chain_hash(
            &prev_hash,
            &HashedFields {
                aggregate_type: &event.aggregate_type,
                aggregate_id: &event.aggregate_id,
                sequence: event.sequence,
                event_type: &event.event_type,
                event_version: &event.event_version,
                payload: &jsonb_text(&event.payload)?,
                metadata: &jsonb_text(&event.metadata)?,
                event_id,
                recorded_at_micros: recorded_at.timestamp_micros(),
            },
        )
        .to_vec();
        columns.push(
            event.sequence,
            event.event_type.clone(),
            event.event_version.clone(),
            event.payload.clone(),
            event_id,
            &prev_hash,
            &hash,
        );
        prev_hash = hash;
    }
    let aggregate_types: Vec<&str> = events.iter().map(|e| e.aggregate_type.as_str()).collect();
    let aggregate_ids: Vec<&str> = events.iter().map(|e| e.aggregate_id.as_str()).collect();
    let metadata: Vec<&Value> = events.iter().map(|e| &e.metadata).collect();
    let done = sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata, recorded_at, event_id, prev_hash, hash)
         SELECT e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version,
                e.payload, e.metadata, $8, e.event_id, e.prev_hash, e.hash
           FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[],
                       $7::jsonb[], $9::uuid[], $10::bytea[], $11::bytea[])
                WITH ORDINALITY AS e(aggregate_type, aggregate_id, sequence, event_type, event_version,
                                     payload, metadata, event_id, prev_hash, hash, n)
          ORDER BY e.n",
    )
    .bind(aggregate_types)
    .bind(aggregate_ids)
    .bind(&columns.sequences)
    .bind(&columns.event_types)
    .bind(&columns.event_versions)
    .bind(&columns.payloads)
    .bind(metadata)
    .bind(recorded_at)
    .bind(&columns.event_ids)
    .bind(&columns.prev_hashes)
    .bind(&columns.hashes)
    .execute(&mut **tx)
    .await
    .map_err(classify)?;
    Ok(done.rows_affected())
}

pub(crate) async fn backoff(attempt: u32) {
    // 2, 4, 8, 16 ms ... plus up to as much again of jitter, so colliding writers spread out
    let base = 1u64 << attempt.min(8);
    let jitter = (uuid::Uuid::new_v4().as_u128() % u128::from(base)) as u64;
    tokio::time::sleep(Duration::from_millis(base + jitter)).await;
}

fn to_aggregate_error<E: std::error::Error>(error: Error) -> AggregateError<E> {
    match error {
        Error::Conflict => AggregateError::AggregateConflict,
        Error::Database(db) if is_conflict(&db) => AggregateError::AggregateConflict,
        Error::Database(db) => AggregateError::DatabaseConnectionError(Box::new(db)),
        Error::Deserialize(_) | Error::Serialize(_) | Error::Canonical(_) => {
            AggregateError::DeserializationError(Box::new(error))
        }
        other => AggregateError::UnexpectedError(Box::new(other)),
    }
}

// `Send` bounds: commands and their answers wait in the streams' queues ([`crate::combine`]).
impl<A: Aggregate> EventStore<A> for PgEventStore<A>
where
    A::Command: Send,
    A::Error: Send,
{
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
            Err(error) => Err(to_aggregate_error(error)),
        }
    }
}
