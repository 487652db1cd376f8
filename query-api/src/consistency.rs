//! Read-your-writes: a command answers with the log position of its last event; a query that
//! passes it (argument `position`, or the `Shop-Position` header for the whole request) is
//! answered only once the read model it reads has passed that position. The wait is bounded;
//! past the bound the answer is a typed `not_yet_consistent` error carrying both positions.
//! A request waits at most once per read model however many fields name a position ([`Waits`]),
//! and a `position` argument counts in the query's complexity ([`WAIT_COMPLEXITY`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
    /// `rm_reviews` in PostgreSQL.
    Reviews,
    /// The cart documents in Redis.
    Carts,
    /// This replica's search index.
    Search,
}

impl ReadModel {
    pub const ALL: [ReadModel; 6] = [
        ReadModel::Catalog,
        ReadModel::Stock,
        ReadModel::Orders,
        ReadModel::Reviews,
        ReadModel::Carts,
        ReadModel::Search,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ReadModel::Catalog => "catalog",
            ReadModel::Stock => "stock",
            ReadModel::Orders => "orders",
            ReadModel::Reviews => "reviews",
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

/// What a `position` argument adds to a field's complexity: a field that may wait costs as much
/// as a hundred plain ones, so one query cannot name a position in many fields (the default
/// limit, 5,000, allows fewer than 50).
pub const WAIT_COMPLEXITY: usize = 100;

/// What a field's optional `position` argument adds to its complexity.
pub fn wait_cost(position: &Option<String>) -> usize {
    if position.is_some() {
        WAIT_COMPLEXITY
    } else {
        0
    }
}

/// The read-your-writes waits of one request. A request's fields resolve concurrently and may
/// each ask for a position (aliases) or all share the request's header: each read model is
/// waited for once per request — its fields take turns, the first one waits, and every wait of
/// the request for that model shares one deadline — so a request waits at most one bound per
/// read model however many fields it has. After the deadline a field that needs more than the
/// model was seen to reach fails at once, without asking again.
#[derive(Clone, Default)]
pub struct Waits(Arc<WaitsInner>);

#[derive(Default)]
struct WaitsInner {
    models: [tokio::sync::Mutex<ModelWait>; ReadModel::ALL.len()],
    polls: AtomicU64,
}

/// One read model's waits in a request.
#[derive(Default)]
struct ModelWait {
    /// The furthest position the model was seen at.
    seen: Option<LogPosition>,
    /// When the request's waits for the model end (set by the first one).
    deadline: Option<Instant>,
}

impl Waits {
    /// How many times this request asked a read model where it stands.
    pub fn polls(&self) -> u64 {
        self.0.polls.load(Ordering::Relaxed)
    }

    /// Returns once `model` has passed `required`, or fails with `not_yet_consistent` at this
    /// request's deadline for `model`.
    async fn wait(
        &self,
        models: &ReadModels,
        model: ReadModel,
        required: LogPosition,
    ) -> QueryResult<()> {
        let mut state = self.0.models[model as usize].lock().await;
        if state.seen.is_some_and(|seen| seen >= required) {
            return Ok(());
        }
        let deadline = *state
            .deadline
            .get_or_insert_with(|| Instant::now() + models.consistency_wait);
        let mut pause = Duration::from_millis(5);
        loop {
            let current = match state.seen {
                // this request's time for the model is spent: answer with what was seen
                Some(seen) if Instant::now() >= deadline => seen,
                _ => {
                    self.0.polls.fetch_add(1, Ordering::Relaxed);
                    let current = models.position(model).await?;
                    state.seen = state.seen.max(Some(current));
                    current
                }
            };
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

/// Returns once `model` has passed the position the field asks for (its `position` argument,
/// else the request's `Shop-Position` header; at once when there is none), or fails with
/// `not_yet_consistent` after the configured wait — one wait per read model per request (see
/// [`Waits`]).
pub async fn await_position(
    ctx: &Context<'_>,
    model: ReadModel,
    argument: Option<&str>,
) -> QueryResult<()> {
    let Some(required) = required(ctx, argument)? else {
        return Ok(());
    };
    let models = ctx.data_unchecked::<ReadModels>();
    // a request run without the HTTP layer's bookkeeping waits on its own
    let waits = ctx.data_opt::<Waits>().cloned().unwrap_or_default();
    waits.wait(models, model, required).await
}

impl ReadModels {
    /// Where `model` stands now.
    pub async fn position(&self, model: ReadModel) -> QueryResult<LogPosition> {
        use projections::pg::{
            catalog::Catalog, checkpoint_name, orders::Orders, reviews::Reviews, stock::Stock,
        };
        let checkpoint = match model {
            ReadModel::Catalog => checkpoint_name(&Catalog),
            ReadModel::Stock => checkpoint_name(&Stock),
            ReadModel::Orders => checkpoint_name(&Orders),
            ReadModel::Reviews => checkpoint_name(&Reviews),
            ReadModel::Carts => projections::redis::SUBSCRIPTION.to_owned(),
            ReadModel::Search => return Ok(self.search.position()),
        };
        Ok(eventlog::checkpoint::load(&self.pool, &checkpoint).await?)
    }
}
