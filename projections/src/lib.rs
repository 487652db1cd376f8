//! shop's the read side's projectors: durable subscriptions over the gap-safe log building read models in PostgreSQL, Redis and tantivy. Built by the Read side issue.
//!
//! Nothing is here yet: this crate marks where that role lives in the workspace
//! (see ARCHITECTURE.md).
