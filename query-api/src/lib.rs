//! shop's read API: GraphQL (async-graphql on axum) at `/graphql`, subscriptions over WebSocket
//! (graphql-ws and graphql-transport-ws) at `/graphql/ws`.
//!
//! It reads the read models the projectors build — the catalog, stock and orders in PostgreSQL,
//! carts in Redis, and a search index this replica feeds itself from the log
//! ([`follow_search`]) — and, for auditors, the event store. Auth uses the command API's access
//! tokens; every error carries `extensions.code` from the command API's vocabulary.

pub mod consistency;
pub mod error;
pub mod http;
pub mod schema;
pub mod viewer;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use projections::redis::RedisReadModels;
use projections::search::{SearchFeed, SearchIndex};
use sqlx::PgPool;
use tokio::sync::watch;

pub use http::{router, QueryApi};
pub use schema::{sdl, ShopSchema};
pub use web::web_router;

/// The stores the query API reads.
#[derive(Clone)]
pub struct ReadModels {
    pub pool: PgPool,
    /// `None`: carts are folded from their events.
    pub redis: Option<Arc<RedisReadModels>>,
    pub search: SearchIndex,
    /// How long a read waits for a read model to reach a requested position.
    pub consistency_wait: Duration,
}

/// Settings of the query API.
#[derive(Clone, Debug)]
pub struct QueryConfig {
    /// Bound of the read-your-writes wait.
    pub consistency_wait: Duration,
    pub max_depth: usize,
    /// Fields cost 1; a connection's selection costs `first` times over.
    pub max_complexity: usize,
    /// Longest query text accepted (persisted queries are not supported; this bounds parsing).
    pub max_query_bytes: usize,
    pub introspection: bool,
    /// Serve GraphiQL at `GET /graphql`.
    pub graphiql: bool,
    /// How often the order-status feed polls the log.
    pub order_feed_poll: Duration,
    /// Where product images are served, the prefix of their URLs: `/media` (this listener,
    /// [`media::http::router`]) unless a CDN or the bucket serves them (`SHOP_MEDIA_PUBLIC_URL`).
    pub media_base_url: String,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            consistency_wait: Duration::from_secs(2),
            max_depth: 10,
            max_complexity: 5_000,
            max_query_bytes: 16 * 1024,
            introspection: true,
            graphiql: true,
            order_feed_poll: Duration::from_millis(100),
            media_base_url: media::http::MEDIA_PREFIX.to_owned(),
        }
    }
}

/// Keeps this replica's search index current until `stop`: rebuilds it from the log when the
/// disk is empty, then follows. Errors are logged and retried (the index keeps serving what it
/// has).
pub async fn follow_search(index: SearchIndex, pool: PgPool, mut stop: watch::Receiver<bool>) {
    let mut feed = match SearchFeed::new(&index) {
        Ok(feed) => feed,
        Err(error) => {
            tracing::error!(%error, "search index: cannot take the writer; searches will not update");
            return;
        }
    };
    while !*stop.borrow() {
        let read = match feed.follow(&pool, 2_000).await {
            Ok(read) => read,
            Err(error) => {
                tracing::warn!(%error, "search index: batch failed; retrying");
                0
            }
        };
        if read == 0 {
            let _ = tokio::time::timeout(Duration::from_millis(100), stop.changed()).await;
        }
    }
}
