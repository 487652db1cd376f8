//! The event log: shop's PostgreSQL event store and everything that reads it in order.
//!
//! - [`store`]: a cqrs-es [`cqrs_es::EventStore`] over the postgres-es `events` table, with
//!   metadata, snapshots and upcasting, plus [`store::PgEventStore::execute`], which runs a command
//!   with bounded retries on concurrency conflicts and reports the log position it wrote.
//! - [`group`]: group commit: concurrent commands on different streams share one transaction.
//! - [`unit`]: units of work: commands on several streams (and rows of other tables) in one
//!   transaction, all or nothing; concurrent units share transactions through [`group`].
//! - [`log`]: the gap-safe reader; [`checkpoint`]: durable subscription positions.
//! - [`audit`]: the per-stream hash chain and its verifier; [`anchor`]: signed digests of every
//!   stream head, kept outside the database, that catch a truncated or rewritten tail.
//! - [`codec`]: a step between an event's domain form and its stored form (sealing).
//! - [`streams`]: lookups of stored streams for the other crates, which write no SQL on `events`.
//! - [`migrate`]: the schema, applied idempotently by `shop migrate`.

pub mod anchor;
pub mod audit;
pub mod checkpoint;
pub mod codec;
pub mod combine;
pub mod error;
pub mod group;
pub mod hash;
pub mod log;
pub mod metadata;
pub mod migrate;
pub mod source;
pub mod store;
pub mod streams;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod unit;
pub mod upcast;

pub use error::{Error, Result};
pub use log::{LogPosition, RecordedEvent};
pub use metadata::{Actor, EventMetadata};
pub use store::{CommandReceipt, ExecuteError, PgEventStore};
pub use unit::{SideWrite, StagedCommand, UnitOfWork, UnitReceipt};
