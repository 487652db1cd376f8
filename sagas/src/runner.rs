//! The saga runner: follows the event log from its durable checkpoint (starting checkouts and
//! telling them what happened elsewhere) and fires due timers (driving checkouts, releasing lapsed
//! reservations). Several runners can run at once: one follows the log (an advisory lock elects
//! it), all of them fire timers (claimed with `SKIP LOCKED`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use eventlog::source::{EventSource, PgLogSource};
use eventlog::RecordedEvent;
use futures_util::StreamExt;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::checkout::CheckoutSaga;
use crate::timers;
use domain::derived_ids::payment_id_of_order;
use domain::OrderId;

/// The subscription name of the checkout saga (its checkpoint row).
pub const SUBSCRIPTION: &str = "saga:checkout";
const LEADER_LOCK: i64 = 7_300_002;

#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Events read per batch.
    pub batch: i64,
    /// Timers fired at once.
    pub concurrency: usize,
    /// How long a claimed timer is ours before another runner may take it.
    pub lease: Duration,
    /// Pause when there is nothing to do.
    pub idle: Duration,
    /// How often to look for checkouts with work left and no timer ([`CheckoutSaga::sweep`]).
    pub sweep_every: Duration,
    /// How often the log follower checks that it still holds the leader lock.
    pub leader_check: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            batch: 500,
            concurrency: 32,
            lease: Duration::from_secs(60),
            idle: Duration::from_millis(20),
            sweep_every: Duration::from_secs(300),
            leader_check: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event log: {0}")]
    Log(#[from] eventlog::Error),
    #[error("event source: {0}")]
    Source(String),
}

pub struct SagaRunner {
    pool: PgPool,
    saga: CheckoutSaga,
    config: RunnerConfig,
}

impl SagaRunner {
    pub fn new(pool: PgPool, saga: CheckoutSaga, config: RunnerConfig) -> Arc<Self> {
        Arc::new(Self { pool, saga, config })
    }

    /// Runs until `stop` turns true; then finishes the work in hand (the current batch and the
    /// timers already claimed) and returns.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) -> Result<(), RunnerError> {
        let follower = tokio::spawn(self.clone().follow_log(stop.clone()));
        let firing = self.fire_timers(stop).await;
        let following = follower.await.unwrap_or(Ok(()));
        firing.and(following)
    }

    /// [`run`](Self::run) with the events from `source` (e.g. Kafka) instead of the log: no
    /// leader election (the source's consumer group splits the work); the saga's handling is
    /// idempotent, so a redelivery changes nothing.
    pub async fn run_from(
        self: Arc<Self>,
        source: Box<dyn EventSource>,
        stop: watch::Receiver<bool>,
    ) -> Result<(), RunnerError> {
        let follower = tokio::spawn(self.clone().follow(source, stop.clone()));
        let firing = self.fire_timers(stop).await;
        let following = follower.await.unwrap_or(Ok(()));
        firing.and(following)
    }

    /// Follows the log while this runner is the leader: one follower at a time. The advisory
    /// lock lives as long as its connection, so the connection is watched: when it breaks (a
    /// database restart, a network cut, a terminated backend) the lock is gone, the follower
    /// stops at once and the runner stands for election again.
    async fn follow_log(
        self: Arc<Self>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), RunnerError> {
        while !*stop.borrow() {
            let mut leader = match self.elect(&mut stop).await {
                Ok(Some(leader)) => leader,
                Ok(None) => return Ok(()),
                Err(error) => {
                    tracing::warn!(%error, "saga: leader election failed; retrying");
                    if wait(&mut stop, Duration::from_secs(1)).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            tracing::info!("saga: this runner follows the log");
            let source = PgLogSource::new(self.pool.clone(), SUBSCRIPTION)
                .await
                .map_err(|e| RunnerError::Source(e.to_string()))?;
            // the follower stops when the runner stops or the lock is lost
            let (lost_tx, lost_rx) = watch::channel(false);
            let mut follow_stop = stop.clone();
            let leading = {
                let mut follow = std::pin::pin!(self.clone().follow(Box::new(source), lost_rx));
                let check = self.config.leader_check;
                loop {
                    tokio::select! {
                        followed = &mut follow => break followed.map(|()| true),
                        () = stopped(&mut follow_stop) => {
                            let _ = lost_tx.send(true);
                            break follow.await.map(|()| true);
                        }
                        _ = tokio::time::sleep(check) => {
                            if !holds_lock(&mut leader).await {
                                tracing::warn!("saga: lost the leader lock (its connection broke); standing again");
                                metrics::counter!("shop_saga_leader_lost_total").increment(1);
                                let _ = lost_tx.send(true);
                                break follow.await.map(|()| false);
                            }
                        }
                    }
                }
            };
            match leading {
                Ok(true) => {
                    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                        .bind(LEADER_LOCK)
                        .execute(&mut leader)
                        .await;
                    return Ok(());
                }
                Ok(false) => {} // lost the lock: stand again
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Waits until this runner holds the leader lock, on a connection of its own (not one the
    /// pool may recycle); `None` when stopped first.
    async fn elect(
        &self,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<sqlx::PgConnection>, RunnerError> {
        use sqlx::Connection;
        let options = self.pool.connect_options();
        let mut leader = sqlx::PgConnection::connect_with(&options).await?;
        loop {
            let elected: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(LEADER_LOCK)
                .fetch_one(&mut leader)
                .await?;
            if elected {
                return Ok(Some(leader));
            }
            if wait(stop, Duration::from_secs(1)).await {
                return Ok(None);
            }
        }
    }

    async fn follow(
        self: Arc<Self>,
        mut source: Box<dyn EventSource>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), RunnerError> {
        let source_error = |e: eventlog::source::SourceError| RunnerError::Source(e.to_string());
        while !*stop.borrow() {
            let batch = match source.next_batch(self.config.batch as usize).await {
                Ok(batch) => batch,
                Err(error) => {
                    // a source that fails now (a broker away) is retried, never fatal
                    tracing::warn!(%error, "saga: cannot read events; retrying");
                    if wait(&mut stop, Duration::from_millis(500)).await {
                        break;
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                if wait(&mut stop, self.config.idle).await {
                    break;
                }
                continue;
            }
            // one checkout's events in log order, different checkouts at once (they are
            // independent): the cart's check-out, its order's and its payment's events go to
            // one group
            let mut streams: Vec<Vec<RecordedEvent>> = Vec::new();
            let mut index: HashMap<String, usize> = HashMap::new();
            for incoming in &batch {
                match incoming {
                    Ok(event) => {
                        let key = checkout_key(event);
                        let slot = *index.entry(key).or_insert_with(|| {
                            streams.push(Vec::new());
                            streams.len() - 1
                        });
                        streams[slot].push(event.clone());
                    }
                    Err(poison) => {
                        source
                            .dead_letter(poison, &poison.reason)
                            .await
                            .map_err(source_error)?;
                    }
                }
            }
            let handled = futures_util::stream::iter(streams)
                .map(|events| self.handle_in_order(events, stop.clone()))
                .buffer_unordered(self.config.concurrency.max(1))
                .fold(true, |all, done| async move { all && done })
                .await;
            if !handled {
                return Ok(()); // stopped while retrying: the batch is redelivered
            }
            if let Err(error) = source.acknowledge().await {
                // handled but not acknowledged: delivered again, and handling is idempotent
                tracing::warn!(%error, "saga: cannot acknowledge; the batch will be redelivered");
            }
        }
        Ok(())
    }

    /// Handles one stream's events of a batch in order; at least once: an event is retried
    /// until handled, never skipped. `false` when stopped first.
    async fn handle_in_order(
        &self,
        events: Vec<RecordedEvent>,
        mut stop: watch::Receiver<bool>,
    ) -> bool {
        for event in &events {
            let mut attempt = 0u32;
            while let Err(error) = self.saga.on_event(event).await {
                attempt += 1;
                tracing::warn!(event_id = %event.event_id, event_type = %event.event_type, %error, attempt, "saga could not handle an event; retrying");
                if wait(&mut stop, Duration::from_millis(50 << attempt.min(7))).await {
                    return false;
                }
            }
        }
        true
    }

    /// Keeps up to `concurrency` timers firing: claims more as soon as some finish, so one slow
    /// checkout never holds up the others.
    async fn fire_timers(&self, mut stop: watch::Receiver<bool>) -> Result<(), RunnerError> {
        let mut firing = tokio::task::JoinSet::new();
        let mut last_sweep = tokio::time::Instant::now();
        while !*stop.borrow() {
            if last_sweep.elapsed() >= self.config.sweep_every {
                last_sweep = tokio::time::Instant::now();
                match self.saga.sweep().await {
                    Ok(0) => {}
                    Ok(found) => {
                        tracing::warn!(found, "saga sweep found checkouts without a timer")
                    }
                    Err(error) => tracing::warn!(%error, "saga sweep failed"),
                }
            }
            // collect what finished without waiting
            while firing.try_join_next().is_some() {}
            let free = self.config.concurrency.max(1).saturating_sub(firing.len());
            if free == 0 {
                tokio::select! {
                    _ = firing.join_next() => {}
                    _ = stop.wait_for(|stopped| *stopped) => break,
                }
                continue;
            }
            let due = match timers::claim_due(&self.pool, free as i64, self.config.lease).await {
                Ok(due) => due,
                Err(error) => {
                    tracing::warn!(%error, "cannot claim timers");
                    if wait(&mut stop, Duration::from_secs(1)).await {
                        break;
                    }
                    continue;
                }
            };
            if due.is_empty() {
                // idle: until something is due, a slot frees up, or stop
                tokio::select! {
                    _ = tokio::time::sleep(self.config.idle) => {}
                    Some(_) = firing.join_next(), if !firing.is_empty() => {}
                    _ = stop.wait_for(|stopped| *stopped) => break,
                }
                continue;
            }
            for timer in due {
                let saga = self.saga.clone();
                firing.spawn(async move {
                    if let Err(error) = saga.fire(&timer).await {
                        tracing::warn!(kind = %timer.kind, key = %timer.key, %error, "timer failed");
                    }
                });
            }
        }
        // the timers already claimed finish their step
        while firing.join_next().await.is_some() {}
        Ok(())
    }
}

/// The checkout an event concerns, as a grouping key: its payment's id (the saga derives a
/// checkout's payment id from its order id, see [`payment_id_of_order`]). Events of anything else are
/// keyed by their own stream.
fn checkout_key(event: &RecordedEvent) -> String {
    let order = match event.aggregate_type.as_str() {
        "order" => event.aggregate_id.parse().ok(),
        "cart" => event.payload["CartCheckedOut"]["order_id"]
            .as_str()
            .and_then(|id| id.parse().ok()),
        _ => None,
    };
    match (order, event.aggregate_type.as_str()) {
        (Some(order), _) => payment_id_of_order(OrderId::new(order)).to_string(),
        (None, "payment") => event.aggregate_id.clone(),
        _ => format!("{}/{}", event.aggregate_type, event.aggregate_id),
    }
}

/// Resolves when `stop` turns true (or its sender is gone), holding no borrow of it.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Whether the leader connection still holds the leader lock (a broken connection does not).
async fn holds_lock(leader: &mut sqlx::PgConnection) -> bool {
    let held = sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_locks
                         WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
                           AND classid = ($1 >> 32)::oid AND objid = ($1 & 4294967295)::oid
                           AND objsubid = 1)",
    )
    .bind(LEADER_LOCK)
    .fetch_one(leader);
    matches!(
        tokio::time::timeout(Duration::from_secs(5), held).await,
        Ok(Ok(true))
    )
}

/// Sleeps for `pause` unless stopped first; `true` when stopped.
async fn wait(stop: &mut watch::Receiver<bool>, pause: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    let stopped = tokio::select! {
        _ = tokio::time::sleep(pause) => None,
        _ = stop.wait_for(|stopped| *stopped) => Some(true),
    };
    stopped.unwrap_or_else(|| *stop.borrow())
}
