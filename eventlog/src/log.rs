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

pub(crate) const COLUMNS: &str = "transaction_id::text::bigint AS transaction_id, global_position, event_id,
    aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at";

pub(crate) fn recorded_event(row: PgRow) -> RecordedEvent {
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
        metadata: row
            .get::<Option<Value>, _>("metadata")
            .unwrap_or(Value::Null),
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

/// A batch read for a subscriber that only reads some aggregate types: [`LogBatch::events`] holds
/// only those (others are neither sent nor parsed — most of a batch's cost), and
/// [`LogBatch::last`] the position of the last event scanned, whatever its type, so the
/// subscriber's checkpoint moves past the rest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogBatch {
    /// The batch's events of the wanted aggregate types, in log order.
    pub events: Vec<RecordedEvent>,
    /// How many events of the log the batch covers (wanted or not).
    pub scanned: usize,
    /// The position of the last event covered; `None` when there was nothing safe to read.
    pub last: Option<LogPosition>,
}

/// Whether a batch read brings each event's metadata (actor, correlation, causation). Readers
/// that only fold payloads skip it: parsing it costs as much as the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metadata {
    Include,
    /// Every event's `metadata` is `null`.
    Skip,
}

/// The next `limit` events after `after` (as [`read_after`]), returning only those of
/// `aggregate_types` plus the position the batch reached.
pub async fn read_batch_for<'e>(
    executor: impl PgExecutor<'e>,
    after: LogPosition,
    limit: i64,
    aggregate_types: &[&str],
    metadata: Metadata,
) -> Result<LogBatch> {
    // unwanted rows come back as their position alone: nothing else is sent or parsed
    let sql = "SELECT events.transaction_id::text::bigint AS transaction_id,
                events.global_position, aggregate_type = ANY($4) AS wanted,
                CASE WHEN aggregate_type = ANY($4) THEN event_id END AS event_id,
                CASE WHEN aggregate_type = ANY($4) THEN aggregate_type END AS aggregate_type,
                CASE WHEN aggregate_type = ANY($4) THEN aggregate_id END AS aggregate_id,
                CASE WHEN aggregate_type = ANY($4) THEN sequence END AS sequence,
                CASE WHEN aggregate_type = ANY($4) THEN event_type END AS event_type,
                CASE WHEN aggregate_type = ANY($4) THEN event_version END AS event_version,
                CASE WHEN aggregate_type = ANY($4) THEN payload END AS payload,
                CASE WHEN aggregate_type = ANY($4) AND $5 THEN metadata END AS metadata,
                CASE WHEN aggregate_type = ANY($4) THEN recorded_at END AS recorded_at
           FROM events
          WHERE (events.transaction_id, events.global_position) > ($1::bigint::text::xid8, $2)
            AND events.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
          -- qualified: the bare names would sort by the output columns, not the index
          ORDER BY events.transaction_id, events.global_position
          LIMIT $3";
    let rows = sqlx::query(sql)
        .bind(after.transaction_id)
        .bind(after.global_position)
        .bind(limit)
        .bind(aggregate_types)
        .bind(metadata == Metadata::Include)
        .fetch_all(executor)
        .await?;
    let mut batch = LogBatch {
        scanned: rows.len(),
        ..LogBatch::default()
    };
    for row in rows {
        let position = LogPosition {
            transaction_id: row.get("transaction_id"),
            global_position: row.get("global_position"),
        };
        batch.last = Some(position);
        if row.get::<bool, _>("wanted") {
            batch.events.push(recorded_event(row));
        }
    }
    Ok(batch)
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

/// The events of the log after a subscriber's position: what it still has to read.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Backlog {
    /// Events after the position.
    pub events: i64,
    /// Age in seconds of the oldest of them (0 when there are none).
    pub oldest_seconds: f64,
}

/// What is left to read after `after` (for lag metrics and projection status).
pub async fn backlog_after<'e>(
    executor: impl PgExecutor<'e>,
    after: LogPosition,
) -> Result<Backlog> {
    let (events, oldest): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), extract(epoch FROM now() - min(recorded_at))::float8
           FROM events WHERE (transaction_id, global_position) > ($1::bigint::text::xid8, $2)",
    )
    .bind(after.transaction_id)
    .bind(after.global_position)
    .fetch_one(executor)
    .await?;
    Ok(Backlog {
        events,
        oldest_seconds: oldest.unwrap_or(0.0).max(0.0),
    })
}

/// How many events of the log are at or before `position`, and how many there are in all (the
/// progress of a reader that started at the beginning).
pub async fn count_up_to<'e>(
    executor: impl PgExecutor<'e>,
    position: LogPosition,
) -> Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT count(*) FILTER (WHERE (transaction_id, global_position) <= ($1::bigint::text::xid8, $2)),
                count(*)
           FROM events",
    )
    .bind(position.transaction_id)
    .bind(position.global_position)
    .fetch_one(executor)
    .await?)
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
