//! The gap-safe log reader: every committed event, exactly once, in one total order.
//!
//! **Invariant: a reader never skips a committed event.** The order is
//! `(transaction_id, global_position)`, and a reader only reads rows whose transaction id is below
//! `pg_snapshot_xmin(pg_current_snapshot())`: every transaction with a smaller id has finished
//! (committed or rolled back), so no event can later appear *before* a position already read. No
//! timeouts, no global lock. A transaction left open holds readers back (never forward); see
//! [`LogStatus::held_back_events`].
//!
//! Ordering by `global_position` alone would skip events: identity values are taken at insert, but
//! become visible at commit, so a later commit can show a smaller position.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};
use uuid::Uuid;

use crate::Result;

/// A place in the log. Positions compare in log order; [`LogPosition::START`] is before every
/// event.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogPosition {
    pub transaction_id: i64,
    pub global_position: i64,
}

impl LogPosition {
    pub const START: LogPosition = LogPosition {
        transaction_id: 0,
        global_position: 0,
    };
}

impl std::fmt::Display for LogPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.transaction_id, self.global_position)
    }
}

impl std::str::FromStr for LogPosition {
    type Err = String;

    /// Parses the `transaction_id.global_position` form [`Display`](std::fmt::Display) writes.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (transaction_id, global_position) = text
            .split_once('.')
            .ok_or_else(|| format!("`{text}` is not a log position (expected XID.POSITION)"))?;
        let number = |part: &str| {
            part.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| format!("`{text}` is not a log position (expected XID.POSITION)"))
        };
        Ok(LogPosition {
            transaction_id: number(transaction_id)?,
            global_position: number(global_position)?,
        })
    }
}

/// A committed event as read from the log.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordedEvent {
    pub position: LogPosition,
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

const COLUMNS: &str = "transaction_id::text::bigint AS transaction_id, global_position, event_id,
    aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at";

fn recorded_event(row: PgRow) -> RecordedEvent {
    RecordedEvent {
        position: LogPosition {
            transaction_id: row.get("transaction_id"),
            global_position: row.get("global_position"),
        },
        event_id: row.get("event_id"),
        aggregate_type: row.get("aggregate_type"),
        aggregate_id: row.get("aggregate_id"),
        sequence: row.get("sequence"),
        event_type: row.get("event_type"),
        event_version: row.get("event_version"),
        payload: row.get("payload"),
        metadata: row.get("metadata"),
        recorded_at: row.get("recorded_at"),
    }
}

/// Up to `limit` events after `after`, in log order, only from transactions that can no longer
/// be overtaken. An empty batch means "nothing safe to read yet", not "the end".
pub async fn read_after<'e>(
    executor: impl PgExecutor<'e>,
    after: LogPosition,
    limit: i64,
) -> Result<Vec<RecordedEvent>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events
          WHERE (events.transaction_id, events.global_position) > ($1::bigint::text::xid8, $2)
            AND events.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
          -- qualified: the bare names would sort by the bigint output columns, not the index
          ORDER BY events.transaction_id, events.global_position
          LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(after.transaction_id)
        .bind(after.global_position)
        .bind(limit)
        .fetch_all(executor)
        .await?;
    Ok(rows.into_iter().map(recorded_event).collect())
}

/// [`read_after`] for a subscriber that only reads some aggregate types: every event's position
/// still comes back (so its checkpoint moves past the rest), but the payload and metadata of the
/// others are `null` — they are neither sent nor parsed, which is most of a batch's cost.
pub async fn read_after_for<'e>(
    executor: impl PgExecutor<'e>,
    after: LogPosition,
    limit: i64,
    aggregate_types: &[&str],
) -> Result<Vec<RecordedEvent>> {
    let sql = "SELECT transaction_id::text::bigint AS transaction_id, global_position, event_id,
                aggregate_type, aggregate_id, sequence, event_type, event_version,
                CASE WHEN aggregate_type = ANY($4) THEN payload ELSE 'null'::jsonb END AS payload,
                CASE WHEN aggregate_type = ANY($4) THEN metadata ELSE 'null'::jsonb END AS metadata,
                recorded_at
           FROM events
          WHERE (events.transaction_id, events.global_position) > ($1::bigint::text::xid8, $2)
            AND events.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY events.transaction_id, events.global_position
          LIMIT $3";
    let rows = sqlx::query(sql)
        .bind(after.transaction_id)
        .bind(after.global_position)
        .bind(limit)
        .bind(aggregate_types)
        .fetch_all(executor)
        .await?;
    Ok(rows.into_iter().map(recorded_event).collect())
}

/// One stream's events in sequence order (for audit history and as-of queries).
pub async fn read_stream<'e>(
    executor: impl PgExecutor<'e>,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Vec<RecordedEvent>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence"
    );
    let rows = sqlx::query(&sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_all(executor)
        .await?;
    Ok(rows.into_iter().map(recorded_event).collect())
}

/// Where the log stands, for lag metrics and readiness.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LogStatus {
    /// The last event a reader may read now.
    pub safe_head: Option<LogPosition>,
    /// Events committed but not yet readable, because an older transaction is still open.
    pub held_back_events: i64,
    /// Age in seconds of the oldest open transaction that has written something: the one that
    /// holds readers back.
    pub oldest_open_transaction_seconds: f64,
}

pub async fn status<'e>(executor: impl PgExecutor<'e>) -> Result<LogStatus> {
    let row = sqlx::query(
        "WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin),
              safe AS (
                SELECT transaction_id::text::bigint AS transaction_id, global_position
                  FROM events, horizon WHERE transaction_id < horizon.xmin
                 ORDER BY events.transaction_id DESC, events.global_position DESC LIMIT 1)
         SELECT (SELECT transaction_id FROM safe) AS transaction_id,
                (SELECT global_position FROM safe) AS global_position,
                (SELECT count(*) FROM events, horizon WHERE transaction_id >= horizon.xmin) AS held_back,
                COALESCE((SELECT extract(epoch FROM now() - min(xact_start))::float8
                            FROM pg_stat_activity
                           WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()), 0) AS oldest",
    )
    .fetch_one(executor)
    .await?;
    let transaction_id: Option<i64> = row.get("transaction_id");
    let global_position: Option<i64> = row.get("global_position");
    Ok(LogStatus {
        safe_head: transaction_id
            .zip(global_position)
            .map(|(transaction_id, global_position)| LogPosition {
                transaction_id,
                global_position,
            }),
        held_back_events: row.get("held_back"),
        oldest_open_transaction_seconds: row.get("oldest"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_transaction_first() {
        let early_tx_late_row = LogPosition {
            transaction_id: 10,
            global_position: 99,
        };
        let late_tx_early_row = LogPosition {
            transaction_id: 11,
            global_position: 5,
        };
        assert!(early_tx_late_row < late_tx_early_row);
        assert!(LogPosition::START < late_tx_early_row);
    }

    #[test]
    fn positions_round_trip_through_text() {
        let position = LogPosition {
            transaction_id: 812,
            global_position: 40_001,
        };
        assert_eq!(position.to_string().parse::<LogPosition>(), Ok(position));
        assert!("812".parse::<LogPosition>().is_err());
        assert!("a.b".parse::<LogPosition>().is_err());
        assert!("-1.4".parse::<LogPosition>().is_err());
    }
}
