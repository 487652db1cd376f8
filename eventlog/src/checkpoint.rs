//! Durable subscription checkpoints: where each named subscription has read up to.
//!
//! A PostgreSQL read model saves its checkpoint in the same transaction as its rows (exactly once);
//! at-least-once consumers save it after their side effects are done.

use sqlx::{PgExecutor, Row};

use crate::log::LogPosition;
use crate::Result;

/// The subscription's position, or [`LogPosition::START`] for a new one.
pub async fn load<'e>(executor: impl PgExecutor<'e>, name: &str) -> Result<LogPosition> {
    let row = sqlx::query(
        "SELECT transaction_id::text::bigint AS transaction_id, global_position
           FROM subscription_checkpoints WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(executor)
    .await?;
    Ok(row.map_or(LogPosition::START, |row| LogPosition {
        transaction_id: row.get("transaction_id"),
        global_position: row.get("global_position"),
    }))
}

/// Moves the subscription forward to `position`. Never moves it back: a stale writer (a second
/// instance that read an older batch) changes nothing, and `false` tells it so.
pub async fn save<'e>(
    executor: impl PgExecutor<'e>,
    name: &str,
    position: LogPosition,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO subscription_checkpoints (name, transaction_id, global_position)
         VALUES ($1, $2::bigint::text::xid8, $3)
         ON CONFLICT (name) DO UPDATE
            SET transaction_id = EXCLUDED.transaction_id,
                global_position = EXCLUDED.global_position,
                updated_at = now()
          WHERE (subscription_checkpoints.transaction_id, subscription_checkpoints.global_position)
              < (EXCLUDED.transaction_id, EXCLUDED.global_position)",
    )
    .bind(name)
    .bind(position.transaction_id)
    .bind(position.global_position)
    .execute(executor)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Puts a subscription back to the start (a rebuild into a new read-model version).
pub async fn reset<'e>(executor: impl PgExecutor<'e>, name: &str) -> Result<()> {
    sqlx::query("DELETE FROM subscription_checkpoints WHERE name = $1")
        .bind(name)
        .execute(executor)
        .await?;
    Ok(())
}
