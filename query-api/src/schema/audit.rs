//! What auditors read, straight from the event store (always current, no read model): a stream's
//! history with metadata, its state as of a version or a time, and its hash chain.

use accounts::Role;
use async_graphql::{Context, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use eventlog::audit::Problem;
use eventlog::{EventMetadata, RecordedEvent};
use uuid::Uuid;

use super::common::{decode_cursor, encode_cursor, page_size, PageInfo};
use crate::error::{IntoGraphql, QueryError, QueryResult};
use crate::viewer::Viewer;
use crate::ReadModels;

#[derive(SimpleObject, Clone, Debug)]
pub struct EventActor {
    /// A user id, or a component's name for system actors (e.g. `saga:checkout`).
    pub id: String,
    /// `customer`, `staff`, `auditor`, `guest` or `system`.
    pub role: String,
}

/// One stored event with its metadata.
#[derive(SimpleObject, Clone, Debug)]
pub struct StoredEvent {
    pub event_id: Uuid,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// Its place in the global log (`XID.POSITION`).
    pub position: String,
    pub recorded_at: DateTime<Utc>,
    pub payload: Json<serde_json::Value>,
    pub actor: Option<EventActor>,
    pub correlation_id: Option<Uuid>,
    /// The event or request this one answered.
    pub causation_id: Option<String>,
    pub command_id: Option<String>,
    pub request_id: Option<String>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct StoredEventEdge {
    pub cursor: String,
    pub node: StoredEvent,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct StoredEventConnection {
    pub edges: Vec<StoredEventEdge>,
    pub page_info: PageInfo,
    pub total_count: i64,
}

/// An aggregate folded from its events up to a point.
#[derive(SimpleObject, Clone, Debug)]
pub struct AggregateState {
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The last event folded in.
    pub version: i64,
    pub as_of: DateTime<Utc>,
    /// The aggregate's state, in its own serialized form.
    pub state: Json<serde_json::Value>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct BrokenLink {
    pub sequence: i64,
    /// `content_altered`, `missing_events` or `chain_broken`.
    pub problem: String,
    pub description: String,
}

/// The outcome of recomputing one stream's hash chain.
#[derive(SimpleObject, Clone, Debug)]
pub struct ChainVerification {
    pub intact: bool,
    pub events: i64,
    pub first_broken: Option<BrokenLink>,
}

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// Auditor: every event of a stream, oldest first, with who caused it and why.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn history(
        &self,
        ctx: &Context<'_>,
        aggregate_type: String,
        aggregate_id: String,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<StoredEventConnection> {
        async {
            ctx.data_unchecked::<Viewer>()
                .require(Role::Auditor, "history")?;
            check_type(&aggregate_type)?;
            let models = ctx.data_unchecked::<ReadModels>();
            history(
                models,
                &aggregate_type,
                &aggregate_id,
                first,
                after.as_deref(),
            )
            .await
        }
        .await
        .gql()
    }

    /// Auditor: the aggregate as it was after event `version`, or at time `at` (exactly one of
    /// them). Null when the stream had no events by then.
    async fn state_at(
        &self,
        ctx: &Context<'_>,
        aggregate_type: String,
        aggregate_id: String,
        at: Option<DateTime<Utc>>,
        version: Option<i64>,
    ) -> async_graphql::Result<Option<AggregateState>> {
        async {
            ctx.data_unchecked::<Viewer>()
                .require(Role::Auditor, "stateAt")?;
            check_type(&aggregate_type)?;
            let models = ctx.data_unchecked::<ReadModels>();
            let events =
                eventlog::log::read_stream(&models.pool, &aggregate_type, &aggregate_id).await?;
            let upto: Vec<RecordedEvent> = match (at, version) {
                (Some(at), None) => events
                    .into_iter()
                    .take_while(|e| e.recorded_at <= at)
                    .collect(),
                (None, Some(version)) if version >= 1 => events
                    .into_iter()
                    .take_while(|e| e.sequence <= version)
                    .collect(),
                (None, Some(version)) => {
                    return Err(QueryError::validation(format!(
                        "version must be at least 1, got {version}"
                    )))
                }
                _ => {
                    return Err(QueryError::validation(
                        "give exactly one of `at` and `version`",
                    ))
                }
            };
            let Some(last) = upto.last() else {
                return Ok(None);
            };
            let state = schemas::fold::fold_to_json(&aggregate_type, &upto)
                .map_err(QueryError::internal)?;
            Ok(Some(AggregateState {
                aggregate_type: aggregate_type.clone(),
                aggregate_id: aggregate_id.clone(),
                version: last.sequence,
                as_of: last.recorded_at,
                state: Json(state),
            }))
        }
        .await
        .gql()
    }

    /// Auditor: recomputes the stream's hash chain from the stored events.
    async fn verify(
        &self,
        ctx: &Context<'_>,
        aggregate_type: String,
        aggregate_id: String,
    ) -> async_graphql::Result<ChainVerification> {
        async {
            ctx.data_unchecked::<Viewer>()
                .require(Role::Auditor, "verify")?;
            check_type(&aggregate_type)?;
            let models = ctx.data_unchecked::<ReadModels>();
            let report =
                eventlog::audit::verify_stream(&models.pool, &aggregate_type, &aggregate_id)
                    .await?;
            Ok(ChainVerification {
                intact: report.is_intact(),
                events: report.events as i64,
                first_broken: report.first_broken.map(|link| BrokenLink {
                    sequence: link.sequence,
                    problem: match link.problem {
                        Problem::ContentAltered => "content_altered",
                        Problem::MissingEvents { .. } => "missing_events",
                        Problem::ChainBroken => "chain_broken",
                    }
                    .to_owned(),
                    description: link.to_string(),
                }),
            })
        }
        .await
        .gql()
    }
}

fn check_type(aggregate_type: &str) -> QueryResult<()> {
    if schemas::AGGREGATE_TYPES.contains(&aggregate_type) {
        Ok(())
    } else {
        Err(QueryError::validation(format!(
            "unknown aggregate type `{aggregate_type}` (expected one of {})",
            schemas::AGGREGATE_TYPES.join(", ")
        )))
    }
}

async fn history(
    models: &ReadModels,
    aggregate_type: &str,
    aggregate_id: &str,
    first: Option<i32>,
    after: Option<&str>,
) -> QueryResult<StoredEventConnection> {
    let first = page_size(first)?;
    let after_sequence = match after {
        Some(cursor) => decode_cursor("event", cursor)?
            .parse::<i64>()
            .map_err(|_| {
                QueryError::validation(format!("`{cursor}` is not a valid cursor here"))
            })?,
        None => 0,
    };
    let rows = eventlog::streams::read_stream_page(
        &models.pool,
        aggregate_type,
        aggregate_id,
        after_sequence,
        first as i64 + 1,
    )
    .await?;
    let total =
        eventlog::streams::stream_length(&models.pool, aggregate_type, aggregate_id).await?;
    let has_next_page = rows.len() > first;
    let edges: Vec<StoredEventEdge> = rows
        .iter()
        .take(first)
        .map(|row| {
            let node = stored_event(row);
            StoredEventEdge {
                cursor: encode_cursor("event", &node.sequence.to_string()),
                node,
            }
        })
        .collect();
    Ok(StoredEventConnection {
        page_info: PageInfo {
            has_next_page,
            has_previous_page: after_sequence > 0,
            start_cursor: edges.first().map(|e| e.cursor.clone()),
            end_cursor: edges.last().map(|e| e.cursor.clone()),
        },
        edges,
        total_count: total,
    })
}

fn stored_event(event: &RecordedEvent) -> StoredEvent {
    let metadata = event.metadata.clone();
    // stored as the flat string map cqrs-es carries
    let metadata: Option<EventMetadata> =
        serde_json::from_value::<std::collections::HashMap<String, String>>(metadata)
            .ok()
            .and_then(|map| EventMetadata::from_map(&map));
    StoredEvent {
        event_id: event.event_id,
        sequence: event.sequence,
        event_type: event.event_type.clone(),
        event_version: event.event_version.clone(),
        position: event.position.to_string(),
        recorded_at: event.recorded_at,
        payload: Json(event.payload.clone()),
        actor: metadata.as_ref().map(|m| EventActor {
            id: m.actor.id.clone(),
            role: m.actor.role.clone(),
        }),
        correlation_id: metadata.as_ref().map(|m| m.correlation_id),
        causation_id: metadata.as_ref().and_then(|m| m.causation_id.clone()),
        command_id: metadata.as_ref().map(|m| m.command_id.clone()),
        request_id: metadata.and_then(|m| m.request_id),
    }
}
