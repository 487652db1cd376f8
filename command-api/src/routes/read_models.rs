//! `/api/read-models/{name}/rebuild`: an operator (staff) rebuilds a PostgreSQL read model from
//! the whole log, blue/green beside the live version (as `shop rebuild` does), in the background
//! of this process. One rebuild per read model at a time: the task holds a session advisory lock
//! while it runs, and a second request meanwhile is a 409. The query API's `readModels` shows its
//! progress.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use schemars::JsonSchema;
use serde::Serialize;

use crate::context::RequestContext;
use crate::AppState;
use accounts::Role;
use http_vocabulary::{ApiError, ApiResult};

/// Events read per batch of a rebuild started here.
const REBUILD_BATCH: i64 = 5_000;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/read-models/{name}/rebuild", post(rebuild))
}

/// A rebuild started in the background.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RebuildStarted {
    /// The read model: `catalog`, `stock` or `orders`.
    pub name: String,
}

async fn rebuild(
    State(state): State<AppState>,
    context: RequestContext,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    context.require(&[Role::Staff])?;
    let projection = projections::pg::by_name(&name).ok_or_else(|| {
        let known: Vec<&str> = projections::pg::all().iter().map(|p| p.name()).collect();
        ApiError::not_found(format!(
            "no read model `{name}`; known: {}",
            known.join(", ")
        ))
    })?;
    let key = projections::pg::rebuild_lock_key(projection.as_ref());
    let mut connection = state.pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut *connection)
        .await?;
    if !locked {
        return Err(ApiError::conflict(format!(
            "a rebuild of {name} is already running"
        )));
    }
    tracing::info!(read_model = %name, "rebuild started");
    let pool = state.pool.clone();
    let runtime = tokio::runtime::Handle::current();
    // on a blocking thread of its own, as the projectors run: the rebuild's future is not `Send`
    tokio::task::spawn_blocking(move || {
        runtime.block_on(async move {
            let name = projection.name();
            match projections::pg::rebuild(&pool, projection.as_ref(), REBUILD_BATCH, |_| {}).await
            {
                Ok(done) => tracing::info!(
                    read_model = name,
                    events = done.events,
                    seconds = done.seconds,
                    "rebuild swapped in"
                ),
                Err(error) => tracing::error!(read_model = name, %error, "rebuild failed"),
            }
            // closing the session releases the lock, whatever happened
            let _ = connection.close().await;
        })
    });
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(RebuildStarted { name: name.clone() }),
    )
        .into_response())
}
