//! Durable timers in PostgreSQL: scheduled work that survives restarts. A runner claims due
//! timers with `FOR UPDATE SKIP LOCKED` and a lease; only the holder of the current claim can
//! complete or reschedule a timer, so two runners never both finish one firing, and a runner that
//! dies mid-work leaves the timer to be claimed again when its lease ends. The work a timer
//! triggers is idempotent (commands with natural keys), so a re-fired timer changes nothing twice.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
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
            SET due_at = LEAST(timers.due_at, EXCLUDED.due_at)",
    )
    .bind(kind)
    .bind(key)
    .bind(due_at)
    .bind(payload)
    .execute(executor)
    .await?;
    Ok(())
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
                           attempts = attempts + 1
          WHERE (kind, key) IN (
                SELECT kind, key FROM timers
                 WHERE due_at <= now() AND (claimed_until IS NULL OR claimed_until < now())
                 ORDER BY due_at
                 LIMIT $1
                 FOR UPDATE SKIP LOCKED)
         RETURNING kind, key, due_at, payload, attempts, claim",
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
        })
        .collect())
}

/// The timer fired and its work is done: remove it. `false` when the claim was lost (the lease
/// ran out and another runner took it) — that runner finishes it.
pub async fn complete(pool: &PgPool, timer: &Timer) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM timers WHERE kind = $1 AND key = $2 AND claim = $3")
        .bind(&timer.kind)
        .bind(&timer.key)
        .bind(timer.claim)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Fires the timer again at `due_at` (more work later), releasing the claim.
pub async fn reschedule(
    pool: &PgPool,
    timer: &Timer,
    due_at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE timers SET due_at = $4, claimed_until = NULL, claim = NULL, attempts = 0
          WHERE kind = $1 AND key = $2 AND claim = $3",
    )
    .bind(&timer.kind)
    .bind(&timer.key)
    .bind(timer.claim)
    .bind(due_at)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Fires the timer again after a failure, with exponential backoff by its attempt count.
pub async fn retry_later(pool: &PgPool, timer: &Timer) -> Result<bool, sqlx::Error> {
    let backoff_ms = 50i64 << timer.attempts.clamp(0, 10);
    let done = sqlx::query(
        "UPDATE timers SET due_at = now() + make_interval(secs => $4), claimed_until = NULL, claim = NULL
          WHERE kind = $1 AND key = $2 AND claim = $3",
    )
    .bind(&timer.kind)
    .bind(&timer.key)
    .bind(timer.claim)
    .bind(backoff_ms.min(30_000) as f64 / 1000.0)
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
