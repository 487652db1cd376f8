//! What operators read: each PostgreSQL read model's position, lag and state, with the progress
//! of a rebuild running now (started with the command API's `POST /api/read-models/{name}/rebuild`
//! or `shop rebuild`). Staff only.

use accounts::Role;
use async_graphql::{Context, Object, SimpleObject};

use crate::error::{IntoGraphql, QueryError};
use crate::viewer::Viewer;
use crate::ReadModels;

/// How far a running rebuild has read the log.
#[derive(SimpleObject, Clone, Debug)]
pub struct RebuildProgress {
    /// Events of the log up to the rebuild's position.
    pub events_done: i64,
    /// Events in the log now.
    pub events_total: i64,
}

/// One PostgreSQL read model (`shop projections status`).
#[derive(SimpleObject, Clone, Debug)]
pub struct ReadModelStatus {
    /// `catalog`, `stock` or `orders`.
    pub name: String,
    /// The last log position applied (`XID.POSITION`).
    pub position: String,
    /// Events in the log after the position.
    pub lag_events: i64,
    /// Age of the oldest event not yet applied; 0 when caught up.
    pub lag_seconds: f64,
    /// `live`, `building` (a rebuild is running beside the live version) or `missing`.
    pub state: String,
    /// Null unless a rebuild is running.
    pub rebuild: Option<RebuildProgress>,
}

#[derive(Default)]
pub struct OperationsQuery;

#[Object]
impl OperationsQuery {
    /// Staff: each PostgreSQL read model's position, lag and state, and a running rebuild's
    /// progress.
    async fn read_models(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ReadModelStatus>> {
        async {
            ctx.data_unchecked::<Viewer>()
                .require(Role::Staff, "readModels")?;
            let models = ctx.data_unchecked::<ReadModels>();
            let mut all = Vec::new();
            for projection in projections::pg::all() {
                let status = projections::pg::status(&models.pool, projection.as_ref())
                    .await
                    .map_err(QueryError::internal)?;
                let rebuild = projections::pg::rebuild_progress(&models.pool, projection.as_ref())
                    .await
                    .map_err(QueryError::internal)?
                    .map(|share| RebuildProgress {
                        events_done: share.events_done,
                        events_total: share.events_total,
                    });
                all.push(ReadModelStatus {
                    name: status.name,
                    position: status.position.to_string(),
                    lag_events: status.lag_events,
                    lag_seconds: status.lag_seconds,
                    state: status.state.to_owned(),
                    rebuild,
                });
            }
            Ok::<_, QueryError>(all)
        }
        .await
        .gql()
    }
}
