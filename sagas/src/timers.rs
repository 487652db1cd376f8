//! Durable timers in PostgreSQL: scheduled work that survives restarts. A runner claims due
//! timers with `FOR UPDATE SKIP LOCKED` and a lease; only the holder of the current claim can
//! complete or reschedule a timer, so two runners never both finish one firing, and a runner that
//! dies mid-work leaves the timer to be claimed again when its lease ends. The work a timer
//! triggers is idempotent (commands with natural keys), so a re-fired timer changes nothing twice.
//!
//! A wake-up ([`schedule`]) that arrives while a runner holds the timer is never lost: each
//! schedule counts a wake, a claim remembers the count it saw, and [`complete`] and
//! [`reschedule`] act only on the firing they claimed (a newer wake leaves the timer due). Work
//! that keeps failing is retried with backoff up to a bound, then [`park`]ed for staff.

use std::time::Duration;

use chrono::{DateTime, Utc};
use eventlog::UnitOfWork;
use serde_json::{json, Value};
use sqlx::{PgExecutor, PgPool, Row};
use uuid::Uuid;

/// A claimed timer.
#[derive(Clone, Debug, PartialEq)]
pub struct Timer {
    pub kind: String,
    pub key: String,
    pub due_at: DateTime<Utc>,
    pub payload: Value,
    pub attempts: i32,
    /// This runner's claim; completing or rescheduling needs it.
    pub claim: Uuid,
    /// The wakes counted when it was claimed; a later [`schedule`] counts another.
    pub wakes: i64,
}

/// Schedules `kind`/`key` at `due_at`; if it is already scheduled, the earlier time wins.
pub async fn schedule<'e>(
    executor: impl PgExecutor<'e>,
    kind: &str,
    key: &str,
    due_at: DateTime<Utc>,
    payload: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO timers (kind, key, due_at, payload) VALUES ($1, $2, $3, $4)
         ON CONFLICT (kind, key) DO UPDATE
            SET due_at = LEAST(timers.due_at, EXCLUDED.due_at), wakes = timers.wakes + 1",
    )
    .bind(kind)
    .bind(key)
    .bind(due_at)
    .bind(payload)
    .execute(executor)
    .await?;
    Ok(())
}

// ---- the same bookkeeping written with a unit of work (in its transaction, only if it is
// written), each statement once for every unit of a group (see `eventlog::unit::SideWrite`) ----

/// [`schedule`], for many timers at once (one schedule per timer: the earliest time).
const SCHEDULE_ROWS: &str = "
    INSERT INTO timers (kind, key, due_at, payload)
    SELECT DISTINCT ON (t.kind, t.key) t.kind, t.key, t.due_at, coalesce(t.payload, '{}')
      FROM jsonb_to_recordset($1) AS t(kind text, key text, due_at timestamptz, payload jsonb)
     ORDER BY t.kind, t.key, t.due_at
    ON CONFLICT (kind, key) DO UPDATE
       SET due_at = LEAST(timers.due_at, EXCLUDED.due_at), wakes = timers.wakes + 1";

/// [`complete`], for many timers at once.
const COMPLETE_ROWS: &str = "
    WITH done AS (SELECT * FROM jsonb_to_recordset($1) AS d(kind text, key text, claim uuid, wakes bigint)),
    deleted AS (
        DELETE FROM timers t USING done d
         WHERE t.kind = d.kind AND t.key = d.key AND t.claim = d.claim AND t.wakes = d.wakes)
    UPDATE timers t SET claimed_until = NULL, claim = NULL, attempts = 0
      FROM done d
     WHERE t.kind = d.kind AND t.key = d.key AND t.claim = d.claim AND t.wakes <> d.wakes";

/// [`reschedule`], for many timers at once.
const RESCHEDULE_ROWS: &str = "
    UPDATE timers t
       SET due_at = CASE WHEN t.wakes = r.wakes THEN r.due_at ELSE LEAST(t.due_at, r.due_at) END,
           claimed_until = NULL, claim = NULL, attempts = 0
      FROM jsonb_to_recordset($1) AS r(kind text, key text, claim uuid, due_at timestamptz, wakes bigint)
     WHERE t.kind = r.kind AND t.key = r.key AND t.claim = r.claim";

/// [`schedule`] in `unit`'s transaction.
pub fn schedule_in(
    unit: &mut UnitOfWork,
    kind: &str,
    key: &str,
    due_at: DateTime<Utc>,
    payload: &Value,
) {
    unit.also(
        SCHEDULE_ROWS,
        json!({"kind": kind, "key": key, "due_at": due_at, "payload": payload}),
    );
}

/// [`complete`] in `unit`'s transaction (a claim lost meanwhile changes nothing).
pub fn complete_in(unit: &mut UnitOfWork, timer: &Timer) {
    unit.also(
        COMPLETE_ROWS,
        json!({"kind": timer.kind, "key": timer.key, "claim": timer.claim, "wakes": timer.wakes}),
    );
}

/// [`reschedule`] in `unit`'s transaction.
pub fn reschedule_in(unit: &mut UnitOfWork, timer: &Timer, due_at: DateTime<Utc>) {
    unit.also(
        RESCHEDULE_ROWS,
        json!({"kind": timer.kind, "key": timer.key, "claim": timer.claim, "due_at": due_at,
               "wakes": timer.wakes}),
    );
}

/// Claims up to `limit` due timers for `lease`.
pub async fn claim_due(
    pool: &PgPool,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Timer>, sqlx::Error> {
    let claim = Uuid::now_v7();
    let rows = sqlx::query(
        "UPDATE timers SET claimed_until = now() + make_interval(secs => $3), claim = $2,
                           attempts = attempts + 1, claimed_wakes = wakes
          WHERE (kind, key) IN (
                SELECT kind, key FROM timers
                 WHERE due_at <= now() AND (claimed_until IS NULL OR claimed_until < now())
                 ORDER BY due_at
                 LIMIT $1
                 FOR UPDATE SKIP LOCKED)
         RETURNING kind, key, due_at, payload, attempts, claim, wakes",
    )
    .bind(limit)
    .bind(claim)
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Timer {
            kind: row.get("kind"),
            key: row.get("key"),
            due_at: row.get("due_at"),
            payload: row.get("payload"),
            attempts: row.get("attempts"),
            claim: row.get("claim"),
            wakes: row.get("wakes"),
        })
        .collect())
}

/// The timer fired and its work is done: remove it — unless it was woken again meanwhile, then
/// it is released and fires again. `false` when the claim was lost (the lease ran out and
/// another runner took it) — that runner finishes it.
pub async fn complete(pool: &PgPool, timer: &Timer) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query(
        "DELETE FROM timers WHERE kind = $1 AND key = $2 AND claim = $3 AND wakes = $4",
    )
    .bind(&timer.kind)
    .bind(&timer.key)
    .bind(timer.claim)
    .bind(timer.wakes)
    .execute(pool)
    .await?;
    if deleted.rows_affected() == 1 {
        return Ok(true);
    }
    // woken while we held it: release it (its due time is the wake's), it fires again
    let released = sqlx::query(
        "UPDATE timers SET claimed_until = NULL, claim = NULL, attempts = 0
          WHERE kind = $1 AND key = $2 AND claim = $3",
    )
    .bind(&timer.kind)
    .bind(&timer.key)
    .bind(timer.claim)
    .execute(pool)
    .await?;
    Ok(released.rows_affected() == 1)
}

/// Fires the timer again at `due_at` (more work later), releasing the claim; a wake that came
/// in meanwhile keeps its earlier time.
pub async fn reschedule(
    pool: &PgPool,
    timer: &Timer,
    due_at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE timers SET due_at = CASE WHEN wakes = $5 THEN $4 ELSE LEAST(due_at, $4) END,
                           claimed_until = NULL, claim = NULL, attempts = 0
          WHERE kind = $1 AND key = $2 AND claim = $3",
    )
    .bind(&timer.kind)
    .bind(&timer.key)
    .bind(timer.claim)
    .bind(due_at)
    .bind(timer.wakes)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Fires the timer again after a failure, with exponential backoff by its attempt count.
pub async fn retry_later(pool: &PgPool, timer: &Timer) -> Result<bool, sqlx::Error> {
    let backoff_ms = 50i64 << timer.attempts.clamp(0, 10);
    let done = sqlx::query(
        "UPDATE timers SET due_at = CASE WHEN wakes = $5 THEN now() + make_interval(secs => $4)
                                         ELSE LEAST(due_at, now() + make_interval(secs => $4)) END,
                           claimed_until = NULL, claim = NULL
          WHERE kind = $1 AND key = $2 AND claim = $3",
    )
    .bind(&timer.kind)
    .bind(&timer.key)
    .bind(timer.claim)
    .bind(backoff_ms.min(30_000) as f64 / 1000.0)
    .bind(timer.wakes)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// How many timers are due now (a metric and a test aid).
pub async fn due_count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM timers WHERE due_at <= now()")
        .fetch_one(pool)
        .await
}

/// Takes a timer whose work kept failing out of the schedule, for staff to look at: it stays in
/// `parked_timers` with the last error until [`resume`]d. `false` when the claim was lost.
pub async fn park(pool: &PgPool, timer: &Timer, reason: &str) -> Result<bool, sqlx::Error> {
    let parked = sqlx::query(
        "WITH taken AS (
            DELETE FROM timers WHERE kind = $1 AND key = $2 AND claim = $3
            RETURNING kind, key, payload, attempts)
         INSERT INTO parked_timers (kind, key, payload, attempts, reason)
         SELECT kind, key, payload, attempts, $4 FROM taken
         ON CONFLICT (kind, key) DO UPDATE
            SET attempts = EXCLUDED.attempts, reason = EXCLUDED.reason, parked_at = now()",
    )
    .bind(&timer.kind)
    .bind(&timer.key)
    .bind(timer.claim)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(parked.rows_affected() == 1)
}

/// A parked timer.
#[derive(Clone, Debug, PartialEq)]
pub struct Parked {
    pub kind: String,
    pub key: String,
    pub attempts: i32,
    pub reason: String,
    pub parked_at: DateTime<Utc>,
}

/// The parked timers, oldest first.
pub async fn parked(pool: &PgPool) -> Result<Vec<Parked>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT kind, key, attempts, reason, parked_at FROM parked_timers ORDER BY parked_at, kind, key",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Parked {
            kind: row.get("kind"),
            key: row.get("key"),
            attempts: row.get("attempts"),
            reason: row.get("reason"),
            parked_at: row.get("parked_at"),
        })
        .collect())
}

/// Puts a parked timer back on the schedule, due now (after staff fixed its cause). `false`
/// when there is no such parked timer.
pub async fn resume(pool: &PgPool, kind: &str, key: &str) -> Result<bool, sqlx::Error> {
    let resumed = sqlx::query(
        "WITH taken AS (
            DELETE FROM parked_timers WHERE kind = $1 AND key = $2 RETURNING kind, key, payload)
         INSERT INTO timers (kind, key, due_at, payload)
         SELECT kind, key, now(), payload FROM taken
         ON CONFLICT (kind, key) DO UPDATE SET due_at = now(), wakes = timers.wakes + 1",
    )
    .bind(kind)
    .bind(key)
    .execute(pool)
    .await?;
    Ok(resumed.rows_affected() == 1)
}

/// How many timers are parked (a metric).
pub async fn parked_count(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM parked_timers")
        .fetch_one(pool)
        .await
}
