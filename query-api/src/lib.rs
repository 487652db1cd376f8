//! shop's the read side's GraphQL API (async-graphql). Built by the GraphQL query API issue.
//!
//! Nothing is here yet: this crate marks where that role lives in the workspace
//! (see ARCHITECTURE.md).
