//! shop's the write side's HTTP front door (axum): auth, RBAC, idempotency keys, problem+json errors. Built by the Command API issue.
//!
//! Nothing is here yet: this crate marks where that role lives in the workspace
//! (see ARCHITECTURE.md).
