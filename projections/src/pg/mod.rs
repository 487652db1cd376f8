//! PostgreSQL read models: each projection owns a schema (`rm_<name>`), applies the log in
//! batches and saves its checkpoint in the same transaction as its rows — exactly once.
//!
//! A rebuild ([`rebuild`]) builds a new version into `rm_<name>__next` from position zero while
//! the live schema keeps serving, catches up, and swaps the two in one transaction: readers see
//! the old version or the new one, never a mix. The old one is dropped afterwards.

pub mod catalog;
pub mod orders;
pub mod reviews;
pub mod stock;

use std::time::Instant;

use async_trait::async_trait;
use eventlog::log::{LogBatch, Metadata};
use eventlog::{checkpoint, log, LogPosition, RecordedEvent};
use sqlx::{PgPool, Postgres, Transaction};

/// What can go wrong in a projection.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event log: {0}")]
    Log(#[from] eventlog::Error),
    #[error("event {event_id} ({event_type}) cannot be projected: {reason}")]
    Event {
        event_id: uuid::Uuid,
        event_type: String,
        reason: String,
    },
}

pub type Result<T, E = ProjectionError> = std::result::Result<T, E>;

/// A read model in PostgreSQL.
#[async_trait]
pub trait PgProjection: Send + Sync {
    /// Short name: the schema is `rm_<name>`, the checkpoint `pg:<name>`.
    fn name(&self) -> &'static str;

    /// The aggregate types whose events this projection reads (the others' payloads are not
    /// even fetched).
    fn aggregate_types(&self) -> &'static [&'static str];

    /// The statements creating this projection's tables in `schema` (empty schema given), with
    /// the keys its writes rely on.
    fn tables(&self, schema: &str) -> String;

    /// Tables added after the projection was first released, as `CREATE TABLE IF NOT EXISTS`:
    /// created with the others, and in a live version that predates them (by
    /// [`ensure_live`]), empty. Only for tables whose rows come from event types introduced
    /// with them, so that an empty table is what following the log would have built.
    fn added_tables(&self, _schema: &str) -> String {
        String::new()
    }

    /// How many transactions a rebuild may apply one batch in, at once, split by stream
    /// (aggregate id). Only for a projection whose rows belong to one stream each, or are
    /// commutative sums written in sorted key order (so concurrent parts wait, never deadlock,
    /// and any interleaving gives the same rows).
    fn rebuild_writers(&self) -> usize {
        1
    }

    /// The statements creating the secondary indexes its readers need. A rebuild creates them
    /// once after the bulk of the log is applied rather than maintaining them row by row.
    fn indexes(&self, _schema: &str) -> String {
        String::new()
    }

    /// Applies a batch of events (in log order) to the tables in `schema`, inside `tx`.
    async fn apply(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        schema: &str,
        events: &[RecordedEvent],
    ) -> Result<()>;
}

pub fn live_schema(projection: &dyn PgProjection) -> String {
    format!("rm_{}", projection.name())
}

fn next_schema(projection: &dyn PgProjection) -> String {
    format!("rm_{}__next", projection.name())
}

pub fn checkpoint_name(projection: &dyn PgProjection) -> String {
    format!("pg:{}", projection.name())
}

fn next_checkpoint_name(projection: &dyn PgProjection) -> String {
    format!("pg:{}:next", projection.name())
}

/// The advisory lock a projection's writer holds per batch; the swap takes it too.
fn lock_key(projection: &dyn PgProjection) -> i64 {
    // the name's hash, in the projections' own key range
    (fnv1a(projection.name()) >> 1) as i64
}

/// FNV-1a: a hash that is the same in every process and release.
fn fnv1a(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Creates the live schema and tables when they do not exist yet.
pub async fn ensure_live(pool: &PgPool, projection: &dyn PgProjection) -> Result<()> {
    let schema = live_schema(projection);
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock_key(projection))
        .execute(&mut *tx)
        .await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(&schema)
            .fetch_one(&mut *tx)
            .await?;
    if !exists {
        sqlx::raw_sql(&format!(
            "CREATE SCHEMA {schema}; {} {} {}",
            projection.tables(&schema),
            projection.added_tables(&schema),
            projection.indexes(&schema)
        ))
        .execute(&mut *tx)
        .await?;
        checkpoint::reset(&mut *tx, &checkpoint_name(projection)).await?;
    } else {
        let added = projection.added_tables(&schema);
        if !added.is_empty() {
            sqlx::raw_sql(&added).execute(&mut *tx).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Applies the next batch (up to `limit` events) to the live read model; the number applied.
pub async fn step(pool: &PgPool, projection: &dyn PgProjection, limit: i64) -> Result<usize> {
    let name = checkpoint_name(projection);
    let mut tx = pool.begin().await?;
    // one writer per projection at a time (several projector processes may run)
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock_key(projection))
        .execute(&mut *tx)
        .await?;
    // the lock is ours: the committed checkpoint is the one to continue from
    let position = checkpoint::load(pool, &name).await?;
    // the metadata only feeds the per-event debug spans
    let metadata = if tracing::enabled!(tracing::Level::DEBUG) {
        Metadata::Include
    } else {
        Metadata::Skip
    };
    let batch = log::read_batch_for(
        pool,
        position,
        limit,
        projection.aggregate_types(),
        metadata,
    )
    .await?;
    let Some(last) = batch.last else {
        return Ok(0);
    };
    let span = tracing::info_span!(
        "projection.batch",
        projection = projection.name(),
        events = batch.scanned,
        applied = batch.events.len(),
        from = %position,
        to = %last,
    );
    let _entered = span.enter();
    // a span per event at debug level, with the correlation id of the request behind it
    for event in &batch.events {
        let _event = tracing::debug_span!(
            "projection.event",
            event_type = %event.event_type,
            aggregate_id = %event.aggregate_id,
            correlation_id = event.metadata["correlation_id"].as_str().unwrap_or_default(),
        )
        .entered();
        tracing::debug!("projected");
    }
    drop(_entered);
    projection
        .apply(&mut tx, &live_schema(projection), &batch.events)
        .await?;
    checkpoint::save(&mut *tx, &name, last).await?;
    tx.commit().await?;
    tracing::debug!(parent: &span, "batch committed");
    Ok(batch.scanned)
}

/// Progress of a rebuild, for a progress bar.
#[derive(Clone, Copy, Debug, Default)]
pub struct RebuildProgress {
    pub events: u64,
    pub position: LogPosition,
    pub seconds: f64,
    /// Of `seconds`, the time spent reading the log and the time spent writing the read model
    /// (applying and committing): where a slow rebuild spends it.
    pub read_seconds: f64,
    pub write_seconds: f64,
}

/// Rebuilds a projection into a new version and swaps it in. `progress` is called per batch.
///
/// The bulk of the log is applied the way a load is, not the way a live model is kept: the new
/// tables are unlogged until the bulk is in (nothing of them needs to survive a crash — a
/// rebuild that stops starts over), batches commit without waiting for the disk, secondary
/// indexes are built once at the end, and the next batch is read from the log on a second
/// connection while the current one is written. Then the tables are made durable and the rest is
/// applied, checkpointed and swapped in under the live writer's lock, synchronously.
pub async fn rebuild(
    pool: &PgPool,
    projection: &dyn PgProjection,
    batch: i64,
    mut progress: impl FnMut(RebuildProgress),
) -> Result<RebuildProgress> {
    let next = next_schema(projection);
    let next_name = next_checkpoint_name(projection);
    let started = Instant::now();
    {
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(&format!(
            "DROP SCHEMA IF EXISTS {next} CASCADE; CREATE SCHEMA {next}; {} {}",
            projection.tables(&next),
            projection.added_tables(&next)
        ))
        .execute(&mut *tx)
        .await?;
        set_logged(&mut tx, &next, false).await?;
        checkpoint::reset(&mut *tx, &next_name).await?;
        tx.commit().await?;
    }
    let mut done = RebuildProgress::default();
    // build from position zero, beside the live version: a reader ahead, a writer behind
    let types = projection.aggregate_types();
    let (ahead, behind) = tokio::sync::mpsc::channel::<Result<(LogBatch, f64)>>(2);
    let reader = async move {
        let mut position = LogPosition::START;
        loop {
            let reading = Instant::now();
            let read = log::read_batch_for(pool, position, batch, types, Metadata::Skip)
                .await
                .map_err(ProjectionError::from);
            let end = match &read {
                Ok(read) => match read.last {
                    Some(last) => {
                        position = last;
                        false
                    }
                    None => true,
                },
                Err(_) => true,
            };
            let sent = read.map(|read| (read, reading.elapsed().as_secs_f64()));
            if ahead.send(sent).await.is_err() || end {
                return;
            }
        }
    };
    let writers = projection.rebuild_writers().max(1);
    let writer = async {
        // owned here: when the writer stops (done or failed) the reader's next send fails
        // and it stops too, instead of waiting on a full channel
        let mut behind = behind;
        while let Some(read) = behind.recv().await {
            let (read, read_seconds) = read?;
            done.read_seconds += read_seconds;
            let Some(last) = read.last else {
                break;
            };
            let writing = Instant::now();
            // the batch's streams split over the writers, each part in its own transaction; the
            // checkpoint after all of them (a rebuild that stops starts over, so the parts need
            // not commit together)
            let mut parts: Vec<Vec<RecordedEvent>> = vec![Vec::new(); writers];
            for event in read.events {
                parts[partition(&event.aggregate_id, writers)].push(event);
            }
            let applied = parts
                .iter()
                .filter(|part| !part.is_empty())
                .map(|part| async {
                    let mut tx = pool.begin().await?;
                    sqlx::query("SET LOCAL synchronous_commit = off")
                        .execute(&mut *tx)
                        .await?;
                    projection.apply(&mut tx, &next, part).await?;
                    tx.commit().await?;
                    Ok::<_, ProjectionError>(())
                });
            futures_util::future::try_join_all(applied).await?;
            checkpoint::save(pool, &next_name, last).await?;
            done.write_seconds += writing.elapsed().as_secs_f64();
            done.events += read.scanned as u64;
            done.position = last;
            done.seconds = started.elapsed().as_secs_f64();
            progress(done);
        }
        Ok::<_, ProjectionError>(())
    };
    let ((), written) = tokio::join!(reader, writer);
    written?;
    // durable from here on, with the indexes readers need
    let finishing = Instant::now();
    {
        let mut tx = pool.begin().await?;
        set_logged(&mut tx, &next, true).await?;
        sqlx::raw_sql(&projection.indexes(&next))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    done.write_seconds += finishing.elapsed().as_secs_f64();
    // catch up and swap in one transaction, holding the live writer's lock
    let live = live_schema(projection);
    let old = format!("rm_{}__old", projection.name());
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock_key(projection))
        .execute(&mut *tx)
        .await?;
    loop {
        let position = checkpoint::load(&mut *tx, &next_name).await?;
        let read = log::read_batch_for(
            &mut *tx,
            position,
            batch,
            projection.aggregate_types(),
            Metadata::Skip,
        )
        .await?;
        let Some(last) = read.last else {
            break;
        };
        projection.apply(&mut tx, &next, &read.events).await?;
        checkpoint::save(&mut *tx, &next_name, last).await?;
        done.events += read.scanned as u64;
        done.position = last;
    }
    let position = checkpoint::load(&mut *tx, &next_name).await?;
    let live_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(&live)
            .fetch_one(&mut *tx)
            .await?;
    let retire = if live_exists {
        format!("ALTER SCHEMA {live} RENAME TO {old};")
    } else {
        String::new()
    };
    sqlx::raw_sql(&format!(
        "DROP SCHEMA IF EXISTS {old} CASCADE; {retire} ALTER SCHEMA {next} RENAME TO {live};"
    ))
    .execute(&mut *tx)
    .await?;
    checkpoint::reset(&mut *tx, &checkpoint_name(projection)).await?;
    checkpoint::save(&mut *tx, &checkpoint_name(projection), position).await?;
    checkpoint::reset(&mut *tx, &next_name).await?;
    tx.commit().await?;
    sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {old} CASCADE"))
        .execute(pool)
        .await?;
    done.seconds = started.elapsed().as_secs_f64();
    progress(done);
    Ok(done)
}

/// Which of `parts` a stream's events go to: stable for a stream, spread over the parts.
fn partition(aggregate_id: &str, parts: usize) -> usize {
    (fnv1a(aggregate_id) % parts as u64) as usize
}

/// Makes every table of `schema` logged (durable, replicated) or unlogged.
async fn set_logged(tx: &mut Transaction<'_, Postgres>, schema: &str, logged: bool) -> Result<()> {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = $1")
            .bind(schema)
            .fetch_all(&mut **tx)
            .await?;
    let mode = if logged { "LOGGED" } else { "UNLOGGED" };
    for table in tables {
        sqlx::raw_sql(&format!("ALTER TABLE {schema}.\"{table}\" SET {mode}"))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Decodes an event, or says which one could not be read.
pub(crate) fn decode(event: &RecordedEvent) -> Result<schemas::AnyEvent> {
    schemas::decode_ref(
        &event.aggregate_type,
        &event.event_type,
        &event.event_version,
        &event.payload,
    )
    .map_err(|e| ProjectionError::Event {
        event_id: event.event_id,
        event_type: event.event_type.clone(),
        reason: e.to_string(),
    })
}

/// Every PostgreSQL projection.
pub fn all() -> Vec<Box<dyn PgProjection>> {
    vec![
        Box::new(catalog::Catalog),
        Box::new(stock::Stock),
        Box::new(orders::Orders),
        Box::new(reviews::Reviews),
    ]
}

/// Finds a projection by name.
pub fn by_name(name: &str) -> Option<Box<dyn PgProjection>> {
    all().into_iter().find(|p| p.name() == name)
}

/// Where a projection stands against the log.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProjectionStatus {
    pub name: String,
    pub position: LogPosition,
    /// Events in the log after the projection's position.
    pub lag_events: i64,
    /// Age of the oldest event not yet applied (0 when caught up).
    pub lag_seconds: f64,
    /// `live`, `building` (a rebuild in progress) or `missing` (never started).
    pub state: &'static str,
}

pub async fn status(pool: &PgPool, projection: &dyn PgProjection) -> Result<ProjectionStatus> {
    let position = checkpoint::load(pool, &checkpoint_name(projection)).await?;
    let backlog = log::backlog_after(pool, position).await?;
    let schemas: Vec<String> =
        sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname = ANY($1)")
            .bind(vec![live_schema(projection), next_schema(projection)])
            .fetch_all(pool)
            .await?;
    let state = if schemas.contains(&next_schema(projection)) {
        "building"
    } else if schemas.contains(&live_schema(projection)) {
        "live"
    } else {
        "missing"
    };
    Ok(ProjectionStatus {
        name: projection.name().to_owned(),
        position,
        lag_events: backlog.events,
        lag_seconds: backlog.oldest_seconds,
        state,
    })
}

/// How far a running rebuild has read the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RebuildShare {
    /// Events of the log up to the rebuild's position.
    pub events_done: i64,
    /// Events in the log now.
    pub events_total: i64,
}

/// The progress of a rebuild of `projection` running now (its next version exists), else `None`.
pub async fn rebuild_progress(
    pool: &PgPool,
    projection: &dyn PgProjection,
) -> Result<Option<RebuildShare>> {
    let building: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(next_schema(projection))
            .fetch_one(pool)
            .await?;
    if !building {
        return Ok(None);
    }
    let position = checkpoint::load(pool, &next_checkpoint_name(projection)).await?;
    let (events_done, events_total) = log::count_up_to(pool, position).await?;
    Ok(Some(RebuildShare {
        events_done,
        events_total,
    }))
}

/// The session advisory lock one rebuild of `projection` holds while it runs (another request to
/// rebuild it meanwhile is refused); not the live writer's lock.
pub fn rebuild_lock_key(projection: &dyn PgProjection) -> i64 {
    (fnv1a(&format!("rebuild:{}", projection.name())) >> 1) as i64
}

/// Follows the log with every projection until `stop`; each batch is exactly once.
pub async fn follow(
    pool: &PgPool,
    projections: &[Box<dyn PgProjection>],
    batch: i64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    for projection in projections {
        ensure_live(pool, projection.as_ref()).await?;
    }
    while !*stop.borrow() {
        let mut applied = 0;
        for projection in projections {
            match step(pool, projection.as_ref(), batch).await {
                Ok(n) => applied += n,
                Err(error) => {
                    tracing::warn!(projection = projection.name(), %error, "projection batch failed; retrying");
                }
            }
        }
        if applied == 0 {
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(20), stop.changed()).await;
        }
    }
    Ok(())
}
