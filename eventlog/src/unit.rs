//! Units of work: commands on several streams, and rows of other tables, written in ONE
//! transaction — all of it or none of it.
//!
//! A command is *staged* on a unit ([`PgEventStore::stage`]): decided on the stream as the store
//! knows it (its cache, a stream guessed new, or read), exactly as [`PgEventStore::execute`]
//! decides, with the same dedup of command ids (an id found in the stream's dedup window, or
//! staged earlier in the same unit, is not decided again: its earlier run is the answer). Its
//! append is prepared as the single-command path prepares it: sequences after the stream's head,
//! hashes chained from it, the head's transaction id for the xid-order guard. A second command on
//! a stream already in the unit is decided on the state the first one left and chained after it.
//!
//! [`UnitOfWork::commit`] writes every staged append, and the unit's side writes
//! ([`UnitOfWork::also`]), in one transaction: through the process's [`GroupCommitter`], where
//! concurrent units share that transaction (see [`crate::group`]), or alone. The INSERT leaves a
//! unit out whole when any of its streams moved (a first sequence taken, the xid-order guard):
//! the commit answers [`Error::Conflict`], nothing of the unit is written, its streams are read
//! again by the next unit, and the caller decides again (reload, stage again, commit).
//!
//! A unit holds the turns of its streams (the per-stream turn-taking of [`PgEventStore`]) until
//! it is written. It waits for a turn only when every turn it holds sorts before it; otherwise it
//! takes it if free, and if not gives up the turns it holds (they only spare retries, the
//! append's checks are what keeps streams consistent) and then waits: two units never wait for
//! each other.

use std::any::Any;
use std::sync::Arc;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::OwnedMutexGuard;

use crate::group::{write_units, GroupCommitter};
use crate::log::LogPosition;
use crate::metadata::EventMetadata;
use crate::store::{
    classify, CommandReceipt, ExecuteError, PgAggregateContext, PgEventStore, PreparedAppend,
    StreamCache,
};
use crate::{Error, Result};

/// Several streams' commands and other rows, written in one transaction ([`Self::commit`]).
pub struct UnitOfWork {
    pool: PgPool,
    committer: Option<Arc<GroupCommitter>>,
    streams: Vec<Box<dyn StagedStream>>,
    side_writes: Vec<SideWrite>,
    /// The turns this unit holds, by (aggregate type, shard).
    turns: Vec<(TurnKey, OwnedMutexGuard<()>)>,
}

type TurnKey = (&'static str, usize);

/// A row written with a unit, in its transaction, after its events: `sql` takes one parameter,
/// `$1`, a jsonb array of rows (read it with `jsonb_to_recordset($1)`), and is run once per
/// transaction for the rows of every unit written in it, in the order the statements were first
/// asked for. Rows of a unit that is not written are not.
#[derive(Clone, Debug)]
pub struct SideWrite {
    pub(crate) sql: &'static str,
    pub(crate) row: Value,
}

impl SideWrite {
    pub fn new(sql: &'static str, row: Value) -> Self {
        Self { sql, row }
    }
}

/// What a staged command decided.
#[derive(Debug, Clone)]
pub struct StagedCommand<A: Aggregate> {
    /// The events it will write (or, when `replayed`, wrote before).
    pub events: Vec<A::Event>,
    /// The command id had already run on this stream (or was staged before in this unit):
    /// nothing new is staged.
    pub replayed: bool,
    /// The stream's sequence after the unit's commands so far.
    pub last_sequence: i64,
    /// The aggregate after the unit's commands so far.
    pub aggregate: A,
    /// When `replayed` because the command id ran in an earlier transaction: that run's
    /// receipt (its events, last sequence and log position).
    pub earlier_run: Option<CommandReceipt<A::Event>>,
}

/// How [`PgEventStore::stage_decision`] decides a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deciding {
    /// On a copy of the stream's state, kept only when the command stages events.
    OnACopy,
    /// On the stream's state itself (see [`PgEventStore::stage_decision`]).
    InPlace,
}

/// A staged command's decision, without the aggregate.
pub(crate) struct StageDecision<A: Aggregate> {
    pub(crate) events: Vec<A::Event>,
    pub(crate) replayed: bool,
    pub(crate) last_sequence: i64,
    pub(crate) earlier_run: Option<CommandReceipt<A::Event>>,
}

/// What a unit wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitReceipt {
    /// Log position of the unit's last event; `None` when it wrote no event.
    pub position: Option<LogPosition>,
    /// Log position of the last event of each staged command that wrote events: streams in the
    /// order the unit first staged them, each stream's commands in the order they were staged.
    pub positions: Vec<LogPosition>,
}

/// A unit's appends and side writes, ready to be written.
pub(crate) struct PreparedUnit {
    pub(crate) appends: Vec<PreparedAppend>,
    pub(crate) side_writes: Vec<SideWrite>,
}

impl UnitOfWork {
    /// A unit written through the process's group committer for `pool` (shared with the
    /// single-command appends of every store on that pool).
    pub fn new(pool: &PgPool) -> Self {
        Self::with_committer(pool, Some(GroupCommitter::for_pool(pool)))
    }

    /// A unit written in a transaction of its own, never grouped with others.
    pub fn alone(pool: &PgPool) -> Self {
        Self::with_committer(pool, None)
    }

    /// A unit written through `committer` (or alone with `None`).
    pub fn with_committer(pool: &PgPool, committer: Option<Arc<GroupCommitter>>) -> Self {
        Self {
            pool: pool.clone(),
            committer,
            streams: Vec::new(),
            side_writes: Vec::new(),
            turns: Vec::new(),
        }
    }

    /// Writes `row` with this unit (see [`SideWrite`]).
    pub fn also(&mut self, sql: &'static str, row: Value) {
        self.side_writes.push(SideWrite { sql, row });
    }

    /// Whether nothing is staged: no event and no side write.
    pub fn is_empty(&self) -> bool {
        self.side_writes.is_empty() && self.streams.iter().all(|s| s.appends().is_empty())
    }

    /// How many commands with events are staged.
    pub fn staged_commands(&self) -> usize {
        self.streams.iter().map(|s| s.appends().len()).sum()
    }

    fn index_of(&self, aggregate_type: &str, aggregate_id: &str) -> Option<usize> {
        self.streams
            .iter()
            .position(|s| s.key() == (aggregate_type, aggregate_id))
    }

    /// Takes the turn `key` (see the module documentation for why this never deadlocks).
    async fn take_turn(&mut self, key: TurnKey, turn: &Arc<tokio::sync::Mutex<()>>) {
        if self.turns.iter().any(|(held, _)| *held == key) {
            return;
        }
        let guard = if self.turns.iter().all(|(held, _)| *held < key) {
            turn.clone().lock_owned().await
        } else {
            match turn.clone().try_lock_owned() {
                Ok(guard) => guard,
                Err(_) => {
                    self.turns.clear();
                    turn.clone().lock_owned().await
                }
            }
        };
        self.turns.push((key, guard));
    }

    /// Writes everything staged in one transaction. [`Error::Conflict`] when one of its streams
    /// moved since it was decided (nothing was written; reload, decide and stage again).
    pub async fn commit(mut self) -> Result<UnitReceipt> {
        if self.is_empty() {
            for stream in self.streams.drain(..) {
                stream.committed(&[]);
            }
            return Ok(UnitReceipt {
                position: None,
                positions: Vec::new(),
            });
        }
        let mut counts = Vec::with_capacity(self.streams.len());
        let mut appends = Vec::new();
        for stream in &mut self.streams {
            let taken = stream.take_appends();
            counts.push(taken.len());
            appends.extend(taken);
        }
        let prepared = PreparedUnit {
            appends,
            side_writes: std::mem::take(&mut self.side_writes),
        };
        let written = match &self.committer {
            Some(committer) => committer.commit_unit(prepared).await,
            None => match write_units(&self.pool, &[&prepared]).await {
                Ok(mut outcomes) => outcomes.pop().flatten().ok_or(Error::Conflict),
                Err(error) => Err(classify(error)),
            },
        };
        let streams = std::mem::take(&mut self.streams);
        let result = match written {
            Ok(positions) => {
                let position = positions.iter().max().copied();
                let mut rest = positions.as_slice();
                for (stream, count) in streams.into_iter().zip(counts) {
                    let (mine, others) = rest.split_at(count.min(rest.len()));
                    rest = others;
                    stream.committed(mine);
                }
                Ok(UnitReceipt {
                    position,
                    positions,
                })
            }
            Err(error) => {
                for stream in streams {
                    stream.refused();
                }
                Err(error)
            }
        };
        // the turns are given back only now that the unit is written (or refused)
        self.turns.clear();
        result
    }
}

/// One stream of a unit, whatever its aggregate type.
trait StagedStream: Send + Sync {
    fn key(&self) -> (&'static str, &str);
    fn appends(&self) -> &[PreparedAppend];
    fn take_appends(&mut self) -> Vec<PreparedAppend>;
    /// The unit was written: `positions` are those of this stream's appends, in order.
    fn committed(self: Box<Self>, positions: &[LogPosition]);
    /// The unit was not written.
    fn refused(self: Box<Self>);
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

struct Staged<A: Aggregate> {
    cache: Arc<StreamCache<A>>,
    /// The stream with this unit's commands applied.
    context: PgAggregateContext<A>,
    /// Read from the database in this unit (not a cached or guessed head).
    verified: bool,
    appends: Vec<PreparedAppend>,
    /// Sequences of each append, to give the remembered events their positions.
    sequences: Vec<Vec<i64>>,
}

impl<A: Aggregate + Clone + 'static> StagedStream for Staged<A> {
    fn key(&self) -> (&'static str, &str) {
        (A::TYPE, &self.context.aggregate_id)
    }

    fn appends(&self) -> &[PreparedAppend] {
        &self.appends
    }

    fn take_appends(&mut self) -> Vec<PreparedAppend> {
        std::mem::take(&mut self.appends)
    }

    fn committed(mut self: Box<Self>, positions: &[LogPosition]) {
        if self.sequences.is_empty() {
            if self.verified {
                self.cache.remember(self.context);
            }
            return;
        }
        for (sequences, position) in self.sequences.iter().zip(positions) {
            for recent in self.context.recent.iter_mut() {
                if sequences.contains(&recent.sequence) {
                    recent.position = *position;
                }
            }
        }
        if let Some(last) = positions.last() {
            self.context.last_transaction_id = last.transaction_id;
        }
        self.cache.remember(self.context);
    }

    fn refused(self: Box<Self>) {
        if self.sequences.is_empty() {
            self.cache.forget(&self.context.aggregate_id);
        } else {
            self.cache.distrust(&self.context.aggregate_id);
        }
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The snapshot upsert of a unit (a side write), as the single-command append writes it.
const SNAPSHOT: &str = "
    INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, last_hash,
                           last_transaction_id, snapshot_version, payload)
    SELECT DISTINCT ON (s.aggregate_type, s.aggregate_id)
           s.aggregate_type, s.aggregate_id, s.last_sequence, decode(s.last_hash, 'hex'),
           pg_current_xact_id()::text::bigint, s.version, s.payload
      FROM jsonb_to_recordset($1) AS s(aggregate_type text, aggregate_id text, last_sequence bigint,
                                       last_hash text, version bigint, payload jsonb)
     ORDER BY s.aggregate_type, s.aggregate_id, s.last_sequence DESC
    ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
       SET last_sequence = EXCLUDED.last_sequence,
           last_hash = EXCLUDED.last_hash,
           last_transaction_id = EXCLUDED.last_transaction_id,
           snapshot_version = EXCLUDED.snapshot_version,
           payload = EXCLUDED.payload,
           taken_at = now()
     WHERE snapshots.last_sequence < EXCLUDED.last_sequence
        OR snapshots.snapshot_version <> EXCLUDED.snapshot_version";

impl<A> PgEventStore<A>
where
    A: Aggregate + Clone + 'static,
    A::Command: Clone,
{
    /// Decides `command` on the stream and stages its events in `unit` (written by
    /// [`UnitOfWork::commit`], with the rest of the unit or not at all). Decided as
    /// [`PgEventStore::execute`] decides: a command id that already ran on the stream (or was
    /// staged in this unit) is not decided again; an answer that writes nothing is given only
    /// on the stream read up to date (or on what this unit staged on it, which its commit checks).
    pub async fn stage(
        &self,
        unit: &mut UnitOfWork,
        aggregate_id: &str,
        command: A::Command,
        metadata: &EventMetadata,
    ) -> Result<StagedCommand<A>, ExecuteError<A::Error>> {
        let (decision, index) = self
            .stage_decision(unit, aggregate_id, command, metadata, Deciding::OnACopy)
            .await?;
        let aggregate = unit.streams[index]
            .as_any_mut()
            .downcast_mut::<Staged<A>>()
            .expect("one aggregate type per stream key")
            .context
            .aggregate
            .clone();
        Ok(StagedCommand {
            events: decision.events,
            replayed: decision.replayed,
            last_sequence: decision.last_sequence,
            aggregate,
            earlier_run: decision.earlier_run,
        })
    }

    /// [`Self::stage`]'s decision, and the index of the stream in the unit. With
    /// [`Deciding::InPlace`] the command is decided on the unit's state of the stream itself,
    /// not on a copy: for aggregates whose `handle` changes nothing before it has decided (every
    /// aggregate of this project decides first, then writes its events), it spares a copy of
    /// the state per command — what a hot stream's batch of commands costs most otherwise.
    pub(crate) async fn stage_decision(
        &self,
        unit: &mut UnitOfWork,
        aggregate_id: &str,
        command: A::Command,
        metadata: &EventMetadata,
        deciding: Deciding,
    ) -> Result<(StageDecision<A>, usize), ExecuteError<A::Error>> {
        let index = match unit.index_of(A::TYPE, aggregate_id) {
            Some(index) => index,
            None => {
                let shard = self.shard(aggregate_id);
                unit.take_turn((A::TYPE, shard), &self.turns[shard]).await;
                let (context, verified) = match self.cached(aggregate_id) {
                    Some(context) => (context, false),
                    None if self.unknown_streams_are_new
                        && !self.cache.is_suspect(aggregate_id) =>
                    {
                        (PgAggregateContext::new_stream(aggregate_id), false)
                    }
                    None => (self.load_cached(aggregate_id).await?, true),
                };
                unit.streams.push(Box::new(Staged {
                    cache: self.cache.clone(),
                    context,
                    verified,
                    appends: Vec::new(),
                    sequences: Vec::new(),
                }));
                unit.streams.len() - 1
            }
        };
        let command_id = metadata.command_id.clone();
        let map = metadata.to_map();
        loop {
            let staged = unit.streams[index]
                .as_any_mut()
                .downcast_mut::<Staged<A>>()
                .expect("one aggregate type per stream key");
            if let Some(earlier) = staged.context.earlier_run(&command_id) {
                // staged earlier in this unit: no position yet
                let written_before = earlier.position != Some(LogPosition::default());
                return Ok((
                    StageDecision {
                        events: earlier.events.clone(),
                        replayed: true,
                        last_sequence: staged.context.current_sequence,
                        earlier_run: written_before.then_some(earlier),
                    },
                    index,
                ));
            }
            let mut copy = match deciding {
                Deciding::OnACopy => Some(staged.context.duplicate()),
                Deciding::InPlace => None,
            };
            let context = copy.as_mut().unwrap_or(&mut staged.context);
            let sink = EventSink::default();
            let decided = context
                .aggregate
                .handle(command.clone(), &self.services, &sink)
                .await;
            let events = sink.collect().await;
            let trusted = staged.verified || !staged.appends.is_empty();
            match decided {
                Ok(()) if !events.is_empty() => {
                    let payloads = self.stored_payloads(aggregate_id, &events).await?;
                    let mut prepared = self.prepare(context, &events, payloads, &map)?;
                    let first = context.current_sequence + 1;
                    let last = context.current_sequence + events.len() as i64;
                    for (offset, event) in events.iter().enumerate() {
                        context.remember(
                            Some(command_id.clone()),
                            first + offset as i64,
                            LogPosition::default(),
                            event,
                        );
                    }
                    if let Some(last_hash) = prepared.columns.hashes.last() {
                        context.last_hash = last_hash.clone();
                    }
                    context.current_sequence = last;
                    if let Some(snapshot) = prepared.snapshot.take() {
                        context.snapshot_sequence = snapshot.last_sequence;
                        unit.side_writes.push(SideWrite {
                            sql: SNAPSHOT,
                            row: json!({
                                "aggregate_type": A::TYPE,
                                "aggregate_id": aggregate_id,
                                "last_sequence": snapshot.last_sequence,
                                "last_hash": hex::encode(&snapshot.last_hash),
                                "version": snapshot.version,
                                "payload": snapshot.state,
                            }),
                        });
                    }
                    if let Some(copy) = copy {
                        staged.context = copy;
                    }
                    staged.sequences.push(prepared.columns.sequences.clone());
                    staged.appends.push(prepared);
                    return Ok((
                        StageDecision {
                            events,
                            replayed: false,
                            last_sequence: last,
                            earlier_run: None,
                        },
                        index,
                    ));
                }
                // decided on a head not read: read the stream and decide again
                _ if !trusted => {
                    staged.context = self.load_cached(aggregate_id).await?;
                    staged.verified = true;
                }
                Ok(()) => {
                    return Ok((
                        StageDecision {
                            events: Vec::new(),
                            replayed: false,
                            last_sequence: staged.context.current_sequence,
                            earlier_run: None,
                        },
                        index,
                    ))
                }
                Err(error) => return Err(ExecuteError::Domain(error)),
            }
        }
    }

    /// The aggregate as `unit` has it staged, or as it stands now (read up to date) when the
    /// unit has not touched it.
    pub async fn load_in(&self, unit: &mut UnitOfWork, aggregate_id: &str) -> Result<A> {
        if let Some(index) = unit.index_of(A::TYPE, aggregate_id) {
            let staged = unit.streams[index]
                .as_any_mut()
                .downcast_mut::<Staged<A>>()
                .expect("one aggregate type per stream key");
            if staged.verified || !staged.appends.is_empty() {
                return Ok(staged.context.aggregate.clone());
            }
        }
        Ok(self.load_latest(aggregate_id).await?.aggregate)
    }
}
