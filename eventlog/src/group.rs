//! Group commit: concurrent commands on different streams share one transaction.
//!
//! A command prepares its append as it always did (sequences, hashes chained from the stream's
//! cached head, event ids, metadata, recorded_at, the stream's last transaction id for the
//! xid-order guard) and hands it to its process's [`GroupCommitter`]. A flusher takes everything
//! queued (at most [`GroupConfig::max_commands`]) and writes it with one statement — so one round
//! trip and one commit — and answers each command: written at this log position, or refused.
//! There is no timer window: while a flush runs the next group gathers, as in PostgreSQL's own
//! group commit; a command that finds nothing queued or in flight is written at once, alone and
//! by its own task, with the single-command statement (so one writer waits no longer than
//! without group commit).
//!
//! Each command succeeds or fails on its own. The group's INSERT leaves out, whole, a command
//! that the xid-order guard refuses or whose first sequence is taken (a stale cache, a stream
//! guessed new): a conflict, retried by its caller like any other. Should the INSERT fail
//! (a command raced a write not committed yet, or hit an error), the group is written again
//! by the `append_group` function (migration 0003), each command in its own subtransaction, so
//! the others are delayed by one round trip, never failed or partly written. A command that
//! fails there for another reason than a conflict, or a group whose statements both fail (a
//! payload the server refuses while binding), is written alone, each command for its own answer.
//!
//! The transaction's xid is taken when the flush writes, the moment a single command's statement
//! would take it, so the log order (by `transaction_id`, the top-level xid even for rows written
//! in a subtransaction) and the gap-safe reader are unchanged: a group is one transaction like
//! any other. Within a group, commands are written in stream-key order, so two processes' groups
//! that touch the same streams wait for each other in one order (no deadlock).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgArguments, PgConnectOptions};
use sqlx::query::Query;
use sqlx::{PgPool, Postgres, Row};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::log::LogPosition;
use crate::store::{append_alone, classify, PreparedAppend};
use crate::unit::PreparedUnit;
use crate::{Error, Result};

/// How a [`GroupCommitter`] groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    /// Most commands in one transaction. At most 64: a group whose first try fails writes each
    /// command in a subtransaction, and PostgreSQL caches 64 subtransactions per backend before
    /// every snapshot of every session gets slower.
    pub max_commands: usize,
    /// Groups in flight at once (each on its own connection).
    pub flushers: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            max_commands: 64,
            flushers: 1,
        }
    }
}

/// SQLSTATEs of a refused command that a retry (reload, decide again) resolves: the same set as
/// [`crate::error::is_conflict`], with `40001` also standing for the xid-order guard.
const CONFLICTS: [&str; 3] = ["23505", "40001", "40P01"];

/// The per-process queue of appends waiting for a shared transaction.
pub struct GroupCommitter {
    pool: PgPool,
    config: GroupConfig,
    /// Which pool this committer was made for (see [`GroupCommitter::for_pool`]).
    options: Arc<PgConnectOptions>,
    queue: Mutex<Queue>,
    /// Units of work ([`crate::unit`]) waiting for a shared transaction.
    units: Mutex<UnitQueue>,
}

#[derive(Default)]
struct UnitQueue {
    waiting: VecDeque<PendingUnit>,
    /// Unit flush loops running (or units being written alone by their own task).
    flushing: usize,
}

struct PendingUnit {
    unit: PreparedUnit,
    reply: oneshot::Sender<Result<Vec<LogPosition>>>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Pending>,
    /// Flush loops running.
    flushing: usize,
}

struct Pending {
    append: PreparedAppend,
    reply: oneshot::Sender<Result<LogPosition>>,
}

/// The committers of this process, one per pool (by the identity of the pool's connect options,
/// which every clone of a pool shares).
static COMMITTERS: Mutex<Vec<Weak<GroupCommitter>>> = Mutex::new(Vec::new());

impl GroupCommitter {
    /// A committer of its own (tests, benchmarks); stores usually share [`Self::for_pool`].
    pub fn new(pool: PgPool, config: GroupConfig) -> Arc<Self> {
        assert!(
            (1..=64).contains(&config.max_commands) && config.flushers >= 1,
            "group commit: 1 to 64 commands per group and at least one flusher"
        );
        Arc::new(Self {
            options: pool.connect_options(),
            pool,
            config,
            queue: Mutex::new(Queue::default()),
            units: Mutex::new(UnitQueue::default()),
        })
    }

    /// The process's committer for `pool` (and its clones), with the default settings: every
    /// store built on the pool shares it, so commands on different aggregate types share
    /// transactions too.
    pub fn for_pool(pool: &PgPool) -> Arc<Self> {
        let options = pool.connect_options();
        let mut committers = COMMITTERS.lock().unwrap_or_else(PoisonError::into_inner);
        committers.retain(|committer| committer.strong_count() > 0);
        if let Some(existing) = committers
            .iter()
            .filter_map(Weak::upgrade)
            .find(|committer| Arc::ptr_eq(&committer.options, &options))
        {
            return existing;
        }
        let committer = Self::new(pool.clone(), GroupConfig::default());
        committers.push(Arc::downgrade(&committer));
        committer
    }

    pub fn config(&self) -> GroupConfig {
        self.config
    }

    /// Appends waiting for a flush (not counting those being flushed).
    pub fn queued(&self) -> usize {
        self.lock().waiting.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `append` in the next group; its log position, or [`Error::Conflict`] when another
    /// writer took one of its sequences first or the xid-order guard refused it.
    pub(crate) async fn append(self: &Arc<Self>, append: PreparedAppend) -> Result<LogPosition> {
        let alone = {
            let mut queue = self.lock();
            let alone = queue.flushing == 0 && queue.waiting.is_empty();
            if alone {
                queue.flushing += 1;
            }
            alone
        };
        if alone {
            // written here, on this task, with no hand-over to a flusher (a command that arrives
            // meanwhile queues, and its group starts when this one is done)
            let _done = Alone(self);
            return append_alone(&self.pool, &append).await;
        }
        let (reply, answer) = oneshot::channel();
        let start_flusher = {
            let mut queue = self.lock();
            queue.waiting.push_back(Pending { append, reply });
            let start = queue.flushing < self.config.flushers;
            if start {
                queue.flushing += 1;
            }
            start
        };
        if start_flusher {
            // a task of its own, not this command's future: a caller that gives up (a dropped
            // request) must not take the other commands' flush with it
            tokio::spawn(Flusher::new(self.clone()).run());
        }
        answer.await.unwrap_or_else(|_| {
            Err(Error::InvalidAppend(
                "the group commit flusher stopped before answering".into(),
            ))
        })
    }

    /// Writes one group and answers each of its commands.
    async fn flush(&self, mut group: Vec<Pending>) {
        if group.len() == 1 {
            let pending = group.pop().expect("one");
            let result = append_alone(&self.pool, &pending.append).await;
            let _ = pending.reply.send(result);
            return;
        }
        // stream-key order: groups of two processes lock shared streams in the same order
        group.sort_by(|a, b| {
            (a.append.aggregate_type, &a.append.aggregate_id)
                .cmp(&(b.append.aggregate_type, &b.append.aggregate_id))
        });
        let again = match self.write(&group).await {
            Ok(outcomes) => {
                let mut again = Vec::new();
                for (pending, outcome) in group.into_iter().zip(outcomes) {
                    match outcome {
                        Outcome::Written(position) => {
                            let _ = pending.reply.send(Ok(position));
                        }
                        Outcome::Conflict => {
                            let _ = pending.reply.send(Err(Error::Conflict));
                        }
                        Outcome::Failed(sqlstate) => {
                            tracing::debug!(
                                aggregate_type = pending.append.aggregate_type,
                                aggregate_id = %pending.append.aggregate_id,
                                sqlstate,
                                "a grouped append failed: writing it alone"
                            );
                            again.push(pending);
                        }
                    }
                }
                again
            }
            Err(error) => {
                tracing::warn!(%error, commands = group.len(), "a group append failed: writing each command alone");
                group
            }
        };
        // alone and concurrently, each on its own; the next group does not wait for them
        for pending in again {
            let pool = self.pool.clone();
            tokio::spawn(async move {
                let result = append_alone(&pool, &pending.append).await;
                let _ = pending.reply.send(result);
            });
        }
    }

    /// Writes `group` in one statement: one INSERT of every command's rows, each command's
    /// refused as a whole by the xid-order guard or when its first sequence is taken. Only when
    /// that INSERT fails (a command raced a write not committed yet, or an error) the group is
    /// written again by `append_group`, each command in its own subtransaction. An outcome per
    /// command, in order.
    async fn write(&self, group: &[Pending]) -> std::result::Result<Vec<Outcome>, sqlx::Error> {
        let columns = GroupColumns::new(group);
        match columns.insert().fetch_all(&self.pool).await {
            Ok(rows) => {
                let mut commands: HashMap<Uuid, usize> = HashMap::with_capacity(rows.len());
                for (n, pending) in group.iter().enumerate() {
                    for event_id in &pending.append.columns.event_ids {
                        commands.insert(*event_id, n);
                    }
                }
                // refused (no row came back): a conflict, like the single-command append's
                let mut outcomes = vec![Outcome::Conflict; group.len()];
                for row in rows {
                    let Some(&n) = commands.get(&row.get::<Uuid, _>("event_id")) else {
                        continue;
                    };
                    let position = LogPosition {
                        transaction_id: row.get("transaction_id"),
                        global_position: row.get("global_position"),
                    };
                    outcomes[n] = match outcomes[n] {
                        Outcome::Written(last) if last > position => Outcome::Written(last),
                        _ => Outcome::Written(position),
                    };
                }
                Ok(outcomes)
            }
            Err(error) => {
                tracing::debug!(%error, commands = group.len(), "a group's INSERT failed: each command in its own subtransaction");
                let rows = columns.per_command().fetch_all(&self.pool).await?;
                let mut outcomes = vec![Outcome::Failed("no answer".into()); group.len()];
                for row in rows {
                    let command: i32 = row.get("command");
                    let Some(outcome) = usize::try_from(command - 1)
                        .ok()
                        .and_then(|n| outcomes.get_mut(n))
                    else {
                        continue;
                    };
                    let refused: Option<String> = row.get("refused");
                    *outcome = match refused {
                        None => Outcome::Written(LogPosition {
                            transaction_id: row.get("transaction_id"),
                            global_position: row.get("global_position"),
                        }),
                        Some(sqlstate) if CONFLICTS.contains(&sqlstate.as_str()) => {
                            Outcome::Conflict
                        }
                        Some(sqlstate) => Outcome::Failed(sqlstate),
                    };
                }
                Ok(outcomes)
            }
        }
    }
}

/// A group's appends as the arrays its statements take: per command, and per event (each
/// command's events together, in sequence order, with the command's number, 1-based).
struct GroupColumns<'a> {
    aggregate_types: Vec<&'a str>,
    aggregate_ids: Vec<&'a str>,
    metadata: Vec<&'a Value>,
    recorded_at: Vec<DateTime<Utc>>,
    last_transaction_ids: Vec<i64>,
    first_sequences: Vec<i64>,
    commands: Vec<i32>,
    sequences: Vec<i64>,
    event_types: Vec<&'a str>,
    event_versions: Vec<&'a str>,
    payloads: Vec<&'a Value>,
    event_ids: Vec<Uuid>,
    prev_hashes: Vec<&'a [u8]>,
    hashes: Vec<&'a [u8]>,
}

impl<'a> GroupColumns<'a> {
    fn new(group: &'a [Pending]) -> Self {
        let events: usize = group.iter().map(|p| p.append.columns.sequences.len()).sum();
        let mut columns = Self {
            aggregate_types: Vec::with_capacity(group.len()),
            aggregate_ids: Vec::with_capacity(group.len()),
            metadata: Vec::with_capacity(group.len()),
            recorded_at: Vec::with_capacity(group.len()),
            last_transaction_ids: Vec::with_capacity(group.len()),
            first_sequences: Vec::with_capacity(group.len()),
            commands: Vec::with_capacity(events),
            sequences: Vec::with_capacity(events),
            event_types: Vec::with_capacity(events),
            event_versions: Vec::with_capacity(events),
            payloads: Vec::with_capacity(events),
            event_ids: Vec::with_capacity(events),
            prev_hashes: Vec::with_capacity(events),
            hashes: Vec::with_capacity(events),
        };
        for (n, pending) in group.iter().enumerate() {
            let append = &pending.append;
            let events = &append.columns;
            columns.aggregate_types.push(append.aggregate_type);
            columns.aggregate_ids.push(&append.aggregate_id);
            columns.metadata.push(&append.metadata);
            columns.recorded_at.push(append.recorded_at);
            columns
                .last_transaction_ids
                .push(append.last_transaction_id);
            columns
                .first_sequences
                .push(events.sequences.first().copied().unwrap_or(1));
            columns
                .commands
                .extend(std::iter::repeat_n(n as i32 + 1, events.sequences.len()));
            columns.sequences.extend(&events.sequences);
            columns
                .event_types
                .extend(events.event_types.iter().map(String::as_str));
            columns
                .event_versions
                .extend(events.event_versions.iter().map(String::as_str));
            columns.payloads.extend(&events.payloads);
            columns.event_ids.extend(&events.event_ids);
            columns
                .prev_hashes
                .extend(events.prev_hashes.iter().map(Vec::as_slice));
            columns
                .hashes
                .extend(events.hashes.iter().map(Vec::as_slice));
        }
        columns
    }

    /// The 13 arguments both statements share.
    fn bind<'q>(&'q self, sql: &'q str) -> Query<'q, Postgres, PgArguments> {
        sqlx::query(sql)
            .bind(&self.aggregate_types)
            .bind(&self.aggregate_ids)
            .bind(&self.metadata)
            .bind(&self.recorded_at)
            .bind(&self.last_transaction_ids)
            .bind(&self.commands)
            .bind(&self.sequences)
            .bind(&self.event_types)
            .bind(&self.event_versions)
            .bind(&self.payloads)
            .bind(&self.event_ids)
            .bind(&self.prev_hashes)
            .bind(&self.hashes)
    }

    fn insert(&self) -> Query<'_, Postgres, PgArguments> {
        self.bind(INSERT_GROUP).bind(&self.first_sequences)
    }

    fn per_command(&self) -> Query<'_, Postgres, PgArguments> {
        self.bind(APPEND_GROUP)
    }
}

/// Every command of a group in one INSERT. A command whose stream's last event is from a newer
/// transaction (the xid-order guard, as in the single-command append) or whose first sequence
/// is taken is left out whole: none of its rows comes back.
const INSERT_GROUP: &str = "
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                        payload, metadata, recorded_at, event_id, prev_hash, hash)
    SELECT ($1::text[])[e.command], ($2::text[])[e.command], e.sequence, e.event_type,
           e.event_version, e.payload, ($3::jsonb[])[e.command], ($4::timestamptz[])[e.command],
           e.event_id, e.prev_hash, e.hash
      FROM UNNEST($6::integer[], $7::bigint[], $8::text[], $9::text[], $10::jsonb[], $11::uuid[],
                  $12::bytea[], $13::bytea[])
           WITH ORDINALITY AS e(command, sequence, event_type, event_version, payload, event_id,
                                prev_hash, hash, n)
     WHERE pg_current_xact_id() >= ($5::bigint[])[e.command]::text::xid8
       AND NOT EXISTS (SELECT 1 FROM events h
                        WHERE h.aggregate_type = ($1::text[])[e.command]
                          AND h.aggregate_id = ($2::text[])[e.command]
                          AND h.sequence = ($14::bigint[])[e.command])
     ORDER BY e.n
    RETURNING event_id, transaction_id::text::bigint AS transaction_id, global_position";

/// The same group, each command in its own subtransaction (migration 0003).
const APPEND_GROUP: &str = "
    SELECT command, transaction_id, global_position, refused
      FROM append_group($1::text[], $2::text[], $3::jsonb[], $4::timestamptz[], $5::bigint[],
                        $6::integer[], $7::bigint[], $8::text[], $9::text[], $10::jsonb[],
                        $11::uuid[], $12::bytea[], $13::bytea[])";

/// What the group did with one command.
#[derive(Clone, Debug)]
enum Outcome {
    Written(LogPosition),
    /// Another writer took a sequence first, or the xid-order guard refused: reload and retry.
    Conflict,
    /// Any other error (its SQLSTATE): the command is written again alone, for its own answer.
    Failed(String),
}

/// A command being written alone by its own task ([`GroupCommitter::append`]): when it is done
/// or given up, the flusher's place is free again, and a flush loop starts for whatever queued
/// meanwhile.
struct Alone<'a>(&'a Arc<GroupCommitter>);

impl Drop for Alone<'_> {
    fn drop(&mut self) {
        let committer = self.0;
        let start = {
            let mut queue = committer.lock();
            let start = !queue.waiting.is_empty();
            if !start {
                queue.flushing -= 1;
            }
            start
        };
        if start {
            // the place passes to the flush loop
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(Flusher::new(committer.clone()).run());
                }
                Err(_) => drop(Flusher::new(committer.clone())),
            }
        }
    }
}

/// A running flush loop: flushes groups until the queue is empty. If it stops early (a panic, a
/// runtime shutting down), it gives its place back; when no other loop runs, the commands still
/// waiting are answered with an error rather than left waiting.
struct Flusher {
    committer: Arc<GroupCommitter>,
    finished: bool,
}

impl Flusher {
    fn new(committer: Arc<GroupCommitter>) -> Self {
        Self {
            committer,
            finished: false,
        }
    }

    async fn run(mut self) {
        loop {
            let group: Vec<Pending> = {
                let mut queue = self.committer.lock();
                if queue.waiting.is_empty() {
                    queue.flushing -= 1;
                    self.finished = true;
                    return;
                }
                let take = queue.waiting.len().min(self.committer.config.max_commands);
                queue.waiting.drain(..take).collect()
            };
            self.committer.flush(group).await;
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let abandoned: Vec<Pending> = {
            let mut queue = self.committer.lock();
            queue.flushing -= 1;
            if queue.flushing == 0 {
                queue.waiting.drain(..).collect()
            } else {
                Vec::new()
            }
        };
        // dropping their reply senders answers them: "the flusher stopped"
        drop(abandoned);
    }
}

// ---- units of work: several streams, all or nothing, many units per transaction ----
//
// A unit ([`crate::unit`]) queues like a command, in a queue of its own (so the single-command
// path is unchanged), and a flush writes every queued unit in one transaction: one INSERT of all
// their events, which leaves out whole any unit one of whose streams moved, then each side-write
// statement once for the units written, then the commit. A unit that finds nothing queued or in
// flight is written at once by its own task. Two units of one group that write the same stream
// would make the INSERT fail on the stream key: the later one is written after the group, alone.
// Should the group's transaction fail, each of its units is written alone, for its own answer.

impl GroupCommitter {
    fn lock_units(&self) -> std::sync::MutexGuard<'_, UnitQueue> {
        self.units.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `unit` in the next group of units: the positions of its appends, in order, or
    /// [`Error::Conflict`] when one of its streams moved (nothing of it was written).
    pub(crate) async fn commit_unit(
        self: &Arc<Self>,
        unit: PreparedUnit,
    ) -> Result<Vec<LogPosition>> {
        let alone = {
            let mut queue = self.lock_units();
            let alone = queue.flushing == 0 && queue.waiting.is_empty();
            if alone {
                queue.flushing += 1;
            }
            alone
        };
        if alone {
            let _done = UnitAlone(self);
            return write_unit_alone(&self.pool, &unit).await;
        }
        let (reply, answer) = oneshot::channel();
        let start_flusher = {
            let mut queue = self.lock_units();
            queue.waiting.push_back(PendingUnit { unit, reply });
            let start = queue.flushing < self.config.flushers;
            if start {
                queue.flushing += 1;
            }
            start
        };
        if start_flusher {
            tokio::spawn(UnitFlusher::new(self.clone()).run());
        }
        answer.await.unwrap_or_else(|_| {
            Err(Error::InvalidAppend(
                "the group commit flusher stopped before answering".into(),
            ))
        })
    }

    async fn flush_units(&self, group: Vec<PendingUnit>) {
        // units that write a stream an earlier unit of the group writes: after the group, alone
        let mut streams: std::collections::HashSet<(&'static str, String)> =
            std::collections::HashSet::new();
        let mut together = Vec::with_capacity(group.len());
        let mut later = Vec::new();
        for pending in group {
            let keys: Vec<(&'static str, String)> = pending
                .unit
                .appends
                .iter()
                .map(|a| (a.aggregate_type, a.aggregate_id.clone()))
                .collect();
            if keys.iter().any(|key| streams.contains(key)) {
                later.push(pending);
            } else {
                streams.extend(keys);
                together.push(pending);
            }
        }
        if together.len() == 1 {
            let pending = together.pop().expect("one");
            let result = write_unit_alone(&self.pool, &pending.unit).await;
            let _ = pending.reply.send(result);
        } else {
            let units: Vec<&PreparedUnit> = together.iter().map(|p| &p.unit).collect();
            match write_units(&self.pool, &units).await {
                Ok(outcomes) => {
                    for (pending, outcome) in together.into_iter().zip(outcomes) {
                        let _ = pending.reply.send(outcome.ok_or(Error::Conflict));
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, units = together.len(), "a group of units failed: writing each alone");
                    later.extend(together);
                }
            }
        }
        for pending in later {
            let pool = self.pool.clone();
            tokio::spawn(async move {
                let result = write_unit_alone(&pool, &pending.unit).await;
                let _ = pending.reply.send(result);
            });
        }
    }
}

/// One unit in a transaction of its own.
async fn write_unit_alone(pool: &PgPool, unit: &PreparedUnit) -> Result<Vec<LogPosition>> {
    match write_units(pool, &[unit]).await {
        Ok(mut outcomes) => outcomes.pop().flatten().ok_or(Error::Conflict),
        Err(error) => Err(classify(error)),
    }
}

/// Writes `units` in one transaction: per unit, the positions of its appends (in its order), or
/// `None` when it was left out because one of its streams moved.
pub(crate) async fn write_units(
    pool: &PgPool,
    units: &[&PreparedUnit],
) -> std::result::Result<Vec<Option<Vec<LogPosition>>>, sqlx::Error> {
    let columns = UnitColumns::new(units);
    let mut tx = pool.begin().await?;
    let rows = if columns.commands.is_empty() {
        Vec::new()
    } else {
        columns.insert().fetch_all(&mut *tx).await?
    };
    let mut positions: Vec<Vec<Option<LogPosition>>> =
        units.iter().map(|u| vec![None; u.appends.len()]).collect();
    for row in rows {
        let Some(&(unit, append)) = columns.owners.get(&row.get::<Uuid, _>("event_id")) else {
            continue;
        };
        let position = LogPosition {
            transaction_id: row.get("transaction_id"),
            global_position: row.get("global_position"),
        };
        let slot = &mut positions[unit][append];
        if slot.is_none_or(|known| known < position) {
            *slot = Some(position);
        }
    }
    let outcomes: Vec<Option<Vec<LogPosition>>> = positions
        .into_iter()
        .map(|appends| appends.into_iter().collect::<Option<Vec<_>>>())
        .collect();
    // the side writes of the units written, each statement once
    let mut statements: Vec<(&'static str, Vec<&Value>)> = Vec::new();
    for (unit, outcome) in units.iter().zip(&outcomes) {
        if outcome.is_none() {
            continue;
        }
        for write in &unit.side_writes {
            match statements.iter_mut().find(|(sql, _)| *sql == write.sql) {
                Some((_, rows)) => rows.push(&write.row),
                None => statements.push((write.sql, vec![&write.row])),
            }
        }
    }
    for (sql, rows) in statements {
        sqlx::query(sql)
            .bind(sqlx::types::Json(rows))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// The appends of a group of units as the arrays of [`INSERT_UNITS`]: per command (sorted by
/// stream key, so transactions lock streams in one order) and per event.
struct UnitColumns<'a> {
    owners: HashMap<Uuid, (usize, usize)>,
    command_units: Vec<i32>,
    aggregate_types: Vec<&'a str>,
    aggregate_ids: Vec<&'a str>,
    first_sequences: Vec<i64>,
    last_transaction_ids: Vec<i64>,
    metadata: Vec<&'a Value>,
    recorded_at: Vec<DateTime<Utc>>,
    commands: Vec<i32>,
    sequences: Vec<i64>,
    event_types: Vec<&'a str>,
    event_versions: Vec<&'a str>,
    payloads: Vec<&'a Value>,
    event_ids: Vec<Uuid>,
    prev_hashes: Vec<&'a [u8]>,
    hashes: Vec<&'a [u8]>,
}

impl<'a> UnitColumns<'a> {
    fn new(units: &[&'a PreparedUnit]) -> Self {
        let mut order: Vec<(usize, usize, &'a PreparedAppend)> = units
            .iter()
            .enumerate()
            .flat_map(|(u, unit)| unit.appends.iter().enumerate().map(move |(a, p)| (u, a, p)))
            .collect();
        order.sort_by(|x, y| {
            let first = |p: &PreparedAppend| p.columns.sequences.first().copied().unwrap_or(0);
            (x.2.aggregate_type, &x.2.aggregate_id, first(x.2)).cmp(&(
                y.2.aggregate_type,
                &y.2.aggregate_id,
                first(y.2),
            ))
        });
        let mut columns = Self {
            owners: HashMap::new(),
            command_units: Vec::new(),
            aggregate_types: Vec::new(),
            aggregate_ids: Vec::new(),
            first_sequences: Vec::new(),
            last_transaction_ids: Vec::new(),
            metadata: Vec::new(),
            recorded_at: Vec::new(),
            commands: Vec::new(),
            sequences: Vec::new(),
            event_types: Vec::new(),
            event_versions: Vec::new(),
            payloads: Vec::new(),
            event_ids: Vec::new(),
            prev_hashes: Vec::new(),
            hashes: Vec::new(),
        };
        for (n, (unit, append, prepared)) in order.into_iter().enumerate() {
            let events = &prepared.columns;
            columns.command_units.push(unit as i32 + 1);
            columns.aggregate_types.push(prepared.aggregate_type);
            columns.aggregate_ids.push(&prepared.aggregate_id);
            columns
                .first_sequences
                .push(events.sequences.first().copied().unwrap_or(1));
            columns
                .last_transaction_ids
                .push(prepared.last_transaction_id);
            columns.metadata.push(&prepared.metadata);
            columns.recorded_at.push(prepared.recorded_at);
            columns
                .commands
                .extend(std::iter::repeat_n(n as i32 + 1, events.sequences.len()));
            columns.sequences.extend(&events.sequences);
            columns
                .event_types
                .extend(events.event_types.iter().map(String::as_str));
            columns
                .event_versions
                .extend(events.event_versions.iter().map(String::as_str));
            columns.payloads.extend(&events.payloads);
            columns.event_ids.extend(&events.event_ids);
            for event_id in &events.event_ids {
                columns.owners.insert(*event_id, (unit, append));
            }
            columns
                .prev_hashes
                .extend(events.prev_hashes.iter().map(Vec::as_slice));
            columns
                .hashes
                .extend(events.hashes.iter().map(Vec::as_slice));
        }
        columns
    }

    fn insert(&self) -> Query<'_, Postgres, PgArguments> {
        sqlx::query(INSERT_UNITS)
            .bind(&self.command_units)
            .bind(&self.aggregate_types)
            .bind(&self.aggregate_ids)
            .bind(&self.first_sequences)
            .bind(&self.last_transaction_ids)
            .bind(&self.metadata)
            .bind(&self.recorded_at)
            .bind(&self.commands)
            .bind(&self.sequences)
            .bind(&self.event_types)
            .bind(&self.event_versions)
            .bind(&self.payloads)
            .bind(&self.event_ids)
            .bind(&self.prev_hashes)
            .bind(&self.hashes)
    }
}

/// Every unit's events in one INSERT. A unit any of whose commands finds its stream's first
/// sequence taken, or its stream's last event from a newer transaction (the xid-order guard), is
/// left out whole: none of its rows is written or comes back.
const INSERT_UNITS: &str = "
    WITH c AS (
        SELECT * FROM UNNEST($1::integer[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
               AS c(unit, aggregate_type, aggregate_id, first_sequence, last_transaction_id)),
    refused AS (
        SELECT DISTINCT c.unit FROM c
         WHERE pg_current_xact_id() < c.last_transaction_id::text::xid8
            OR EXISTS (SELECT 1 FROM events h
                        WHERE h.aggregate_type = c.aggregate_type
                          AND h.aggregate_id = c.aggregate_id
                          AND h.sequence = c.first_sequence))
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                        payload, metadata, recorded_at, event_id, prev_hash, hash)
    SELECT ($2::text[])[e.command], ($3::text[])[e.command], e.sequence, e.event_type,
           e.event_version, e.payload, ($6::jsonb[])[e.command], ($7::timestamptz[])[e.command],
           e.event_id, e.prev_hash, e.hash
      FROM UNNEST($8::integer[], $9::bigint[], $10::text[], $11::text[], $12::jsonb[],
                  $13::uuid[], $14::bytea[], $15::bytea[])
           WITH ORDINALITY AS e(command, sequence, event_type, event_version, payload, event_id,
                                prev_hash, hash, n)
     WHERE NOT EXISTS (SELECT 1 FROM refused r WHERE r.unit = ($1::integer[])[e.command])
     ORDER BY e.n
    RETURNING event_id, transaction_id::text::bigint AS transaction_id, global_position";

/// A unit being written alone by its own task: when done, a unit flush loop starts for whatever
/// queued meanwhile.
struct UnitAlone<'a>(&'a Arc<GroupCommitter>);

impl Drop for UnitAlone<'_> {
    fn drop(&mut self) {
        let committer = self.0;
        let start = {
            let mut queue = committer.lock_units();
            let start = !queue.waiting.is_empty();
            if !start {
                queue.flushing -= 1;
            }
            start
        };
        if start {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(UnitFlusher::new(committer.clone()).run());
                }
                Err(_) => drop(UnitFlusher::new(committer.clone())),
            }
        }
    }
}

/// A unit flush loop (as [`Flusher`], for units).
struct UnitFlusher {
    committer: Arc<GroupCommitter>,
    finished: bool,
}

impl UnitFlusher {
    fn new(committer: Arc<GroupCommitter>) -> Self {
        Self {
            committer,
            finished: false,
        }
    }

    async fn run(mut self) {
        loop {
            let group: Vec<PendingUnit> = {
                let mut queue = self.committer.lock_units();
                if queue.waiting.is_empty() {
                    queue.flushing -= 1;
                    self.finished = true;
                    return;
                }
                let take = queue.waiting.len().min(self.committer.config.max_commands);
                queue.waiting.drain(..take).collect()
            };
            self.committer.flush_units(group).await;
        }
    }
}

impl Drop for UnitFlusher {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let abandoned: Vec<PendingUnit> = {
            let mut queue = self.committer.lock_units();
            queue.flushing -= 1;
            if queue.flushing == 0 {
                queue.waiting.drain(..).collect()
            } else {
                Vec::new()
            }
        };
        drop(abandoned);
    }
}
