//! shop's read side: projectors that follow the gap-safe event log from durable checkpoints and
//! build read models — in PostgreSQL ([`pg`]: exactly once, rows and checkpoint in one
//! transaction, blue/green rebuilds) and in the search index.

pub mod pg;
pub mod redis;
pub mod search;
