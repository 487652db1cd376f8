//! Read-your-writes: a command answers with the log position of its last event; a query that
//! passes it (argument `position`, or the `Shop-Position` header for the whole request) is
//! answered only once the read model it reads has passed that position. The wait is bounded;
//! past the bound the answer is a typed `not_yet_consistent` error carrying both positions.

use std::time::{Duration, Instant};

use async_graphql::Context;
use eventlog::LogPosition;

use crate::error::{QueryError, QueryResult};
use crate::ReadModels;

/// A read model a field reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadModel {
    /// `rm_catalog` in PostgreSQL.
    Catalog,
    /// `rm_stock` in PostgreSQL.
    Stock,
    /// `rm_orders` in PostgreSQL.
    Orders,
    /// The cart documents in Redis.
    Carts,
    /// This replica's search index.
    Search,
}

impl ReadModel {
    pub fn name(self) -> &'static str {
        match self {
            ReadModel::Catalog => "catalog",
            ReadModel::Stock => "stock",
            ReadModel::Orders => "orders",
            ReadModel::Carts => "carts",
            ReadModel::Search => "search",
        }
    }
}

/// The position the whole request asked for (`Shop-Position` header).
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestPosition(pub Option<LogPosition>);

/// Parses a position argument (`XID.POSITION`, as the command API returns it).
pub fn parse_position(text: &str) -> QueryResult<LogPosition> {
    text.parse().map_err(QueryError::Validation)
}

/// The position a field must see: its own argument, else the request's header.
pub fn required(ctx: &Context<'_>, argument: Option<&str>) -> QueryResult<Option<LogPosition>> {
    match argument {
        Some(text) => parse_position(text).map(Some),
        None => Ok(ctx
            .data_opt::<RequestPosition>()
            .and_then(|position| position.0)),
    }
}

impl ReadModels {
    /// Where `model` stands now.
    pub async fn position(&self, model: ReadModel) -> QueryResult<LogPosition> {
        use projections::pg::{catalog::Catalog, checkpoint_name, orders::Orders, stock::Stock};
        let checkpoint = match model {
            ReadModel::Catalog => checkpoint_name(&Catalog),
            ReadModel::Stock => checkpoint_name(&Stock),
            ReadModel::Orders => checkpoint_name(&Orders),
            ReadModel::Carts => projections::redis::SUBSCRIPTION.to_owned(),
            ReadModel::Search => return Ok(self.search.position()),
        };
        Ok(eventlog::checkpoint::load(&self.pool, &checkpoint).await?)
    }

    /// Returns once `model` has passed `required` (at once when `None`), or fails with
    /// `not_yet_consistent` after the configured wait.
    pub async fn await_position(
        &self,
        model: ReadModel,
        required: Option<LogPosition>,
    ) -> QueryResult<()> {
        let Some(required) = required else {
            return Ok(());
        };
        let deadline = Instant::now() + self.consistency_wait;
        let mut pause = Duration::from_millis(5);
        loop {
            let current = self.position(model).await?;
            if current >= required {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(QueryError::NotYetConsistent {
                    read_model: model.name(),
                    required,
                    current,
                });
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}
