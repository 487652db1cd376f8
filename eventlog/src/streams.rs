//! Questions other crates ask about stored streams: a stream's first event, a page of it, its
//! length, the last sequence of many streams, events found by a payload field. `events` belongs
//! to this crate: no other crate writes SQL on it (the tidy test checks), so its shape can change
//! in one place. Each is one parameterized statement; none reads past the log's safe horizon
//! (these are audits and lookups, not subscriptions: use [`crate::log`] to follow the log).

use sqlx::PgExecutor;

use crate::log::{recorded_event, RecordedEvent, COLUMNS};
use crate::Result;

/// The first event of a stream (sequence 1), if the stream exists.
pub async fn first_event<'e>(
    executor: impl PgExecutor<'e>,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Option<RecordedEvent>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = 1"
    );
    let row = sqlx::query(&sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(executor)
        .await?;
    Ok(row.map(recorded_event))
}

/// The stream's first event of type `event_type`, if any.
pub async fn first_event_of_type<'e>(
    executor: impl PgExecutor<'e>,
    aggregate_type: &str,
    aggregate_id: &str,
    event_type: &str,
) -> Result<Option<RecordedEvent>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 AND event_type = $3
          ORDER BY sequence LIMIT 1"
    );
    let row = sqlx::query(&sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(event_type)
        .fetch_optional(executor)
        .await?;
    Ok(row.map(recorded_event))
}

/// Up to `limit` events of a stream after `after_sequence`, in sequence order.
pub async fn read_stream_page<'e>(
    executor: impl PgExecutor<'e>,
    aggregate_type: &str,
    aggregate_id: &str,
    after_sequence: i64,
    limit: i64,
) -> Result<Vec<RecordedEvent>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3
          ORDER BY sequence LIMIT $4"
    );
    let rows = sqlx::query(&sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(after_sequence)
        .bind(limit)
        .fetch_all(executor)
        .await?;
    Ok(rows.into_iter().map(recorded_event).collect())
}

/// How many events a stream holds (0: no such stream).
pub async fn stream_length<'e>(
    executor: impl PgExecutor<'e>,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_one(executor)
    .await?)
}

/// The last sequence of each of `aggregate_ids` that exists (streams without events are left
/// out), in no particular order.
pub async fn last_sequences<'e>(
    executor: impl PgExecutor<'e>,
    aggregate_type: &str,
    aggregate_ids: &[String],
) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT aggregate_id, max(sequence) FROM events
          WHERE aggregate_type = $1 AND aggregate_id = ANY($2) GROUP BY aggregate_id",
    )
    .bind(aggregate_type)
    .bind(aggregate_ids)
    .fetch_all(executor)
    .await?)
}

/// How many streams of `aggregate_type` exist.
pub async fn count_streams<'e>(executor: impl PgExecutor<'e>, aggregate_type: &str) -> Result<i64> {
    Ok(
        sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE aggregate_type = $1 AND sequence = 1",
        )
        .bind(aggregate_type)
        .fetch_one(executor)
        .await?,
    )
}

/// How many events the streams of `aggregate_type` whose id starts with `id_prefix` hold (all of
/// the type's with an empty prefix).
pub async fn count_events<'e>(
    executor: impl PgExecutor<'e>,
    aggregate_type: &str,
    id_prefix: &str,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM events
          WHERE aggregate_type = $1 AND starts_with(aggregate_id, $2)",
    )
    .bind(aggregate_type)
    .bind(id_prefix)
    .fetch_one(executor)
    .await?)
}

/// Every event of `aggregate_type` and `event_type` whose payload holds `value` (as text) at
/// `path` (JSON object keys from the payload's root), in log order. A scan: for rare operations
/// such as a customer's data export, not for requests.
pub async fn find_by_payload_field<'e>(
    executor: impl PgExecutor<'e>,
    aggregate_type: &str,
    event_type: &str,
    path: &[&str],
    value: &str,
) -> Result<Vec<RecordedEvent>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events
          WHERE aggregate_type = $1 AND event_type = $2 AND payload #>> $3 = $4
          ORDER BY events.global_position"
    );
    let rows = sqlx::query(&sql)
        .bind(aggregate_type)
        .bind(event_type)
        .bind(path)
        .bind(value)
        .fetch_all(executor)
        .await?;
    Ok(rows.into_iter().map(recorded_event).collect())
}

/// The ids of the streams of `aggregate_type` that hold an `event_type` event whose payload has
/// `value` (as text) at `{event_type: {field: ...}}`, newest first (e.g. a customer's orders:
/// `("order", "OrderPlaced", "customer", id)`). The expression is spelled
/// `payload -> '<event_type>' ->> '<field>'` with the two names as literals, so that an expression
/// index on exactly that serves it (command-api's migration 0130 has one for a customer's
/// orders); the names must be identifiers (letters, digits, `_`), else the same question is asked
/// with them as parameters (a scan of the type's events). The value is always a parameter.
pub async fn stream_ids_by_event_field<'e>(
    executor: impl PgExecutor<'e>,
    aggregate_type: &str,
    event_type: &str,
    field: &str,
    value: &str,
) -> Result<Vec<String>> {
    let identifier = |name: &str| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let ids = if identifier(event_type) && identifier(field) {
        let sql = format!(
            "SELECT aggregate_id FROM events
              WHERE aggregate_type = $1 AND event_type = $2
                AND payload->'{event_type}'->>'{field}' = $3
              ORDER BY global_position DESC"
        );
        sqlx::query_scalar(&sql)
            .bind(aggregate_type)
            .bind(event_type)
            .bind(value)
            .fetch_all(executor)
            .await?
    } else {
        sqlx::query_scalar(
            "SELECT aggregate_id FROM events
              WHERE aggregate_type = $1 AND event_type = $2 AND payload->$2->>$3 = $4
              ORDER BY global_position DESC",
        )
        .bind(aggregate_type)
        .bind(event_type)
        .bind(field)
        .bind(value)
        .fetch_all(executor)
        .await?
    };
    Ok(ids)
}

/// The ids of the streams of `aggregate_type` whose last event is none of `event_types` (e.g.
/// processes that have not settled). One grouped scan of the type's events.
pub async fn streams_not_ending_with<'e>(
    executor: impl PgExecutor<'e>,
    aggregate_type: &str,
    event_types: &[&str],
) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT aggregate_id FROM events
          WHERE aggregate_type = $1
          GROUP BY aggregate_id
         HAVING (array_agg(event_type ORDER BY sequence DESC))[1] <> ALL($2)",
    )
    .bind(aggregate_type)
    .bind(event_types)
    .fetch_all(executor)
    .await?)
}
