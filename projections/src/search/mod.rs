//! The product search index: tantivy, embedded in each query-api replica and fed by that replica's
//! own subscription to the log, so replicas share no disk.
//!
//! - [`SearchIndex`] is the read side: full text over name, description and category with typo
//!   tolerance, filters (category, price range, in stock), facets and five sorts (relevance,
//!   price both ways, newest, rating) ([`SearchIndex::search`]). It is cheap to clone and safe
//!   to share between request handlers.
//! - [`SearchFeed`] is the write side: it folds product, inventory and review events into
//!   per-SKU state (the rating: count and total of the visible reviews),
//!   upserts one document per listed SKU and stores the last applied [`LogPosition`] in the
//!   index's commit payload, atomically with the documents.
//!
//! Delivery is at least once and every write is idempotent: events at or below the index's stored
//! position are never written again, and a document is replaced by SKU (delete term + add).
//!
//! State on restart: the feed keeps its per-SKU state (product fields, stock level) in memory and
//! rebuilds it by folding the log from position zero whenever it is created. Events up to the
//! index's stored position only update that state (the index already holds their effect), so a
//! replica whose disk survived writes nothing until it passes its stored position, and a replica
//! with an empty disk rebuilds the index on the way. The index is searchable from its stored
//! commit the whole time.
//!
//! [`LogPosition`]: eventlog::LogPosition

mod catalog;
mod collector;
mod feed;
mod index;
mod query;
mod request;
mod schema;

pub use feed::SearchFeed;
pub use index::SearchIndex;
pub use request::{
    Facets, InvalidSearchRequest, PriceBand, ProductHit, SearchPage, SearchRequest, SearchSort,
    MAX_LIMIT, MAX_OFFSET, MAX_QUERY_CHARS, MAX_QUERY_TERMS,
};

use std::path::PathBuf;

use eventlog::LogPosition;

/// What can go wrong searching or feeding the index.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The caller asked for something that cannot be answered (a user error, not a fault).
    #[error(transparent)]
    InvalidRequest(#[from] InvalidSearchRequest),
    #[error("search index error: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("cannot create the index directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the index at {path} has an incompatible format ({found}); delete the directory and the \
         index rebuilds from the log"
    )]
    IncompatibleIndex { path: PathBuf, found: String },
    #[error("event log error: {0}")]
    EventLog(#[from] eventlog::Error),
    #[error("event {event_type} at {position} cannot be decoded: {source}")]
    Decode {
        position: LogPosition,
        event_type: String,
        source: schemas::DecodeError,
    },
    #[error("batch size must be at least 1")]
    InvalidBatchSize,
}

impl SearchError {
    /// True when the request was at fault (answer 4xx / a user error), false for a fault of the
    /// index or the log.
    pub fn is_invalid_request(&self) -> bool {
        matches!(self, SearchError::InvalidRequest(_))
    }
}
