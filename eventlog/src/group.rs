//! Group commit: concurrent commands on different streams share one transaction.
//!
//! A command prepares its append as it always did (sequences, hashes chained from the stream's
//! cached head, event ids, metadata, recorded_at, the stream's last transaction id for the
//! xid-order guard) and hands it to its process's [`GroupCommitter`]. A flusher takes everything
//! queued (at most [`GroupConfig::max_commands`]) and writes it with one statement — so one round
//! trip and one commit — through the `append_group` function (migration 0002), which answers
//! per command: written at this log position, or refused (a conflict, the xid-order guard, an
//! error), each command's rows all or nothing, the others untouched. There is no timer window:
//! while a flush runs the next group gathers, as in PostgreSQL's own group commit; a command that
//! finds nothing in flight is flushed at once, alone, with the single-command statement.
//!
//! A command the group could not write for another reason than a conflict (an error of its own,
//! or a failure of the whole statement such as a payload the server refuses while binding) is
//! written again alone, so one command's fault never becomes another's: the others get the
//! answer they would have got alone, at the cost of one more round trip.
//!
//! The transaction's xid is taken when the flush starts, the same moment a single command's
//! statement would take it, so the log order (by `transaction_id`, the top-level xid even for
//! rows written in a subtransaction) and the gap-safe reader are unchanged: a group is one
//! transaction like any other. Within a group, commands are written in stream-key order, so two
//! processes' groups that touch the same streams wait for each other in one order (no deadlock).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{PgPool, Row};
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::log::LogPosition;
use crate::store::{append_alone, PreparedAppend};
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

    /// One `append_group` statement for `group`: an outcome per command, in order.
    async fn write(&self, group: &[Pending]) -> std::result::Result<Vec<Outcome>, sqlx::Error> {
        let events: usize = group.iter().map(|p| p.append.columns.sequences.len()).sum();
        let mut commands: Vec<i32> = Vec::with_capacity(events);
        let mut sequences: Vec<i64> = Vec::with_capacity(events);
        let mut event_types: Vec<&str> = Vec::with_capacity(events);
        let mut event_versions: Vec<&str> = Vec::with_capacity(events);
        let mut payloads: Vec<&Value> = Vec::with_capacity(events);
        let mut event_ids: Vec<Uuid> = Vec::with_capacity(events);
        let mut prev_hashes: Vec<&[u8]> = Vec::with_capacity(events);
        let mut hashes: Vec<&[u8]> = Vec::with_capacity(events);
        for (n, pending) in group.iter().enumerate() {
            let columns = &pending.append.columns;
            commands.extend(std::iter::repeat_n(n as i32 + 1, columns.sequences.len()));
            sequences.extend(&columns.sequences);
            event_types.extend(columns.event_types.iter().map(String::as_str));
            event_versions.extend(columns.event_versions.iter().map(String::as_str));
            payloads.extend(&columns.payloads);
            event_ids.extend(&columns.event_ids);
            prev_hashes.extend(columns.prev_hashes.iter().map(Vec::as_slice));
            hashes.extend(columns.hashes.iter().map(Vec::as_slice));
        }
        let rows = sqlx::query(APPEND_GROUP)
            .bind(
                group
                    .iter()
                    .map(|p| p.append.aggregate_type)
                    .collect::<Vec<_>>(),
            )
            .bind(
                group
                    .iter()
                    .map(|p| p.append.aggregate_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(group.iter().map(|p| &p.append.metadata).collect::<Vec<_>>())
            .bind(
                group
                    .iter()
                    .map(|p| p.append.recorded_at)
                    .collect::<Vec<_>>(),
            )
            .bind(
                group
                    .iter()
                    .map(|p| p.append.last_transaction_id)
                    .collect::<Vec<_>>(),
            )
            .bind(commands)
            .bind(sequences)
            .bind(event_types)
            .bind(event_versions)
            .bind(payloads)
            .bind(event_ids)
            .bind(prev_hashes)
            .bind(hashes)
            .fetch_all(&self.pool)
            .await?;
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
                Some(sqlstate) if CONFLICTS.contains(&sqlstate.as_str()) => Outcome::Conflict,
                Some(sqlstate) => Outcome::Failed(sqlstate),
            };
        }
        Ok(outcomes)
    }
}

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
