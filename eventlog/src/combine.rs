//! Commands queued on one stream are decided one after another and written together.
//!
//! Commands on one stream take turns (a stream's decisions are serial), and a turn used to last
//! until the command's append was committed: a hot stream (one SKU everybody buys) managed one
//! command per commit. Now [`PgEventStore::execute`]'s commands on a stream that already has a
//! command in hand wait in that stream's queue; when the command in hand is answered, the queue
//! (up to [`MAX_COMBINED`]) is handed to one of the waiting callers, which decides the commands
//! one after another, each on the state the previous one left, stages them in one unit of work
//! ([`crate::unit`]) and commits it: one transaction and one commit for the lot. The commands
//! are decided on the batch's state itself, not on a copy per command (the copy of a hot
//! stock's state, with its thousands of reservations, was what a command cost most); this
//! relies on `handle` changing nothing before it has decided, as every aggregate here does
//! (`decide`, then write the events).
//!
//! Each command keeps its own answer, exactly as if it had run alone: its events, sequence and
//! log position, its command id's dedup (a repeated id, even within one batch, is a replay), its
//! domain error. A rejected command writes nothing and changes nothing for the others. An answer
//! decided on a state not read from the database (the cache) counts only once the batch's commit
//! confirmed that state; if the stream moved under it (another process wrote), nothing of the
//! batch is written and the whole batch is decided again on the stream read afresh, with the
//! same backoff and attempts as a single command. Should the batch meet any other error, each of
//! its commands runs again alone, for its own answer. A caller that goes away while leading
//! hands the queue on; one whose batch was lost with its leader runs its command alone (its id
//! makes that a replay if the batch was written after all).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use cqrs_es::Aggregate;
use tokio::sync::oneshot;

use crate::metadata::EventMetadata;
use crate::store::{backoff, CommandReceipt, ExecuteError, PgEventStore, MAX_ATTEMPTS};
use crate::unit::{Deciding, UnitOfWork};
use crate::Error;

/// Most commands decided and written as one batch.
pub const MAX_COMBINED: usize = 64;

type Answer<A> =
    Result<CommandReceipt<<A as Aggregate>::Event>, ExecuteError<<A as Aggregate>::Error>>;

/// A command waiting for its stream.
pub(crate) struct Waiting<A: Aggregate> {
    command: A::Command,
    metadata: EventMetadata,
    /// Where its answer (or the lead) goes; `None` for the leader's own command.
    reply: Option<oneshot::Sender<Handover<A>>>,
}

pub(crate) enum Handover<A: Aggregate> {
    Answered(Answer<A>),
    /// Lead this batch (the receiver's own command is the one without a reply).
    Lead(Vec<Waiting<A>>),
}

/// The queues of the streams that have a command in hand (a stream is in the map while it has a
/// leader).
pub(crate) struct Queues<A: Aggregate> {
    waiting: Mutex<HashMap<String, Vec<Waiting<A>>>>,
}

impl<A: Aggregate> Default for Queues<A> {
    fn default() -> Self {
        Self {
            waiting: Mutex::new(HashMap::new()),
        }
    }
}

impl<A: Aggregate> Queues<A> {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Waiting<A>>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives the stream's queue to one of its callers, or, when nobody waits, leaves the stream
    /// without a leader.
    fn hand_on(&self, aggregate_id: &str) {
        let mut queues = self.lock();
        loop {
            let Some(queue) = queues.get_mut(aggregate_id) else {
                return;
            };
            if queue.is_empty() {
                queues.remove(aggregate_id);
                return;
            }
            let take = queue.len().min(MAX_COMBINED);
            let mut batch: Vec<Waiting<A>> = queue.drain(..take).collect();
            // the first caller still waiting leads; callers that went away are dropped
            while !batch.is_empty() {
                let Some(reply) = batch[0].reply.take() else {
                    batch.remove(0);
                    continue;
                };
                match reply.send(Handover::Lead(batch)) {
                    Ok(()) => return,
                    Err(Handover::Lead(mut back)) => {
                        back.remove(0);
                        batch = back;
                    }
                    Err(Handover::Answered(_)) => unreachable!("a lead comes back as sent"),
                }
            }
        }
    }
}

/// Held while a caller leads its stream's batch: handing the queue on when dropped, also when
/// the leading caller's future is dropped half-way.
struct Leadership<'q, A: Aggregate> {
    queues: &'q Queues<A>,
    aggregate_id: &'q str,
}

impl<A: Aggregate> Drop for Leadership<'_, A> {
    fn drop(&mut self) {
        self.queues.hand_on(self.aggregate_id);
    }
}

impl<A> PgEventStore<A>
where
    A: Aggregate + Clone + 'static,
    A::Command: Clone,
{
    /// Runs `command` in its stream's batch (see the module documentation).
    pub(crate) async fn run_combined(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: &EventMetadata,
    ) -> Answer<A> {
        let (reply, mut answer) = oneshot::channel();
        let mut lead = {
            let mut queues = self.queues.lock();
            match queues.get_mut(aggregate_id) {
                Some(queue) => {
                    queue.push(Waiting {
                        command: command.clone(),
                        metadata: metadata.clone(),
                        reply: Some(reply),
                    });
                    None
                }
                None => {
                    queues.insert(aggregate_id.to_owned(), Vec::new());
                    Some(vec![Waiting {
                        command: command.clone(),
                        metadata: metadata.clone(),
                        reply: None,
                    }])
                }
            }
        };
        let batch = match lead.take() {
            Some(batch) => batch,
            None => match (&mut answer).await {
                Ok(Handover::Answered(answer)) => return answer,
                Ok(Handover::Lead(batch)) => batch,
                // the leader went away with this command: run it alone (a replay if written)
                Err(_) => {
                    return self
                        .run_command(aggregate_id, command, metadata, |_| Ok(()))
                        .await
                }
            },
        };
        let _leadership = Leadership {
            queues: &*self.queues,
            aggregate_id,
        };
        metrics::histogram!("shop_combined_commands", "aggregate" => A::TYPE)
            .record(batch.len() as f64);
        if batch.len() == 1 {
            return self
                .run_command(aggregate_id, command, metadata, |_| Ok(()))
                .await;
        }
        self.run_batch(aggregate_id, batch).await
    }

    /// Decides and writes a batch (the leader's own command among it); answers the others and
    /// returns the leader's answer.
    async fn run_batch(&self, aggregate_id: &str, batch: Vec<Waiting<A>>) -> Answer<A> {
        for attempt in 1..=MAX_ATTEMPTS {
            let mut unit = UnitOfWork::with_committer(&self.pool, self.group.clone());
            let mut decided = Vec::with_capacity(batch.len());
            for waiting in &batch {
                match self
                    .stage_decision(
                        &mut unit,
                        aggregate_id,
                        waiting.command.clone(),
                        &waiting.metadata,
                        Deciding::InPlace,
                    )
                    .await
                {
                    Ok((staged, _)) => decided.push(Ok(staged)),
                    Err(ExecuteError::Domain(error)) => decided.push(Err(error)),
                    Err(_) => break,
                }
            }
            if decided.len() < batch.len() {
                drop(unit); // gives the stream's turn back before the commands run alone
                return self.run_each_alone(aggregate_id, batch).await;
            }
            let written = match unit.commit().await {
                Ok(written) => written,
                Err(Error::Conflict) => {
                    backoff(attempt).await;
                    continue;
                }
                Err(_) => return self.run_each_alone(aggregate_id, batch).await,
            };
            let mut positions = written.positions.into_iter();
            // what each command id of the batch wrote, for a later command with the same id
            let mut written_by: HashMap<&str, CommandReceipt<A::Event>> = HashMap::new();
            let mut answers = Vec::with_capacity(batch.len());
            for (waiting, decided) in batch.iter().zip(decided) {
                let command_id = waiting.metadata.command_id.as_str();
                answers.push(match decided {
                    Err(error) => Err(ExecuteError::Domain(error)),
                    Ok(staged) => Ok(match staged.earlier_run {
                        Some(earlier) => earlier,
                        None if staged.replayed => match written_by.get(command_id) {
                            Some(first) => CommandReceipt {
                                replayed: true,
                                ..first.clone()
                            },
                            None => CommandReceipt {
                                replayed: true,
                                last_sequence: staged.last_sequence,
                                position: None,
                                events: staged.events,
                            },
                        },
                        None if staged.events.is_empty() => CommandReceipt {
                            replayed: false,
                            last_sequence: staged.last_sequence,
                            position: None,
                            events: staged.events,
                        },
                        None => {
                            let receipt = CommandReceipt {
                                position: positions.next(),
                                last_sequence: staged.last_sequence,
                                events: staged.events,
                                replayed: false,
                            };
                            written_by.insert(command_id, receipt.clone());
                            receipt
                        }
                    }),
                });
            }
            drop(written_by);
            let mut own = None;
            for (waiting, answer) in batch.into_iter().zip(answers) {
                match waiting.reply {
                    Some(reply) => {
                        let _ = reply.send(Handover::Answered(answer));
                    }
                    None => own = Some(answer),
                }
            }
            return own.expect("the leader's command is in its batch");
        }
        let mut own = None;
        for waiting in batch {
            let answer = Err(ExecuteError::Conflict {
                attempts: MAX_ATTEMPTS,
            });
            match waiting.reply {
                Some(reply) => {
                    let _ = reply.send(Handover::Answered(answer));
                }
                None => own = Some(answer),
            }
        }
        own.expect("the leader's command is in its batch")
    }

    /// Runs each command of the batch on its own (after an error that was not a conflict), so
    /// that each gets its own answer.
    async fn run_each_alone(&self, aggregate_id: &str, batch: Vec<Waiting<A>>) -> Answer<A> {
        let mut own = None;
        for waiting in batch {
            let answer = self
                .run_command(aggregate_id, waiting.command, &waiting.metadata, |_| Ok(()))
                .await;
            match waiting.reply {
                Some(reply) => {
                    let _ = reply.send(Handover::Answered(answer));
                }
                None => own = Some(answer),
            }
        }
        own.expect("the leader's command is in its batch")
    }
}

/// The stream's queue for a store (one per [`PgEventStore`]).
pub(crate) type StreamQueues<A> = Arc<Queues<A>>;
