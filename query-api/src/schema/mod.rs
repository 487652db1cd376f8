//! The GraphQL schema: one root per area, merged.

pub mod account;
pub mod audit;
pub mod carts;
pub mod catalog;
pub mod common;
pub mod operations;
pub mod orders;
pub mod reviews;
pub mod staff;
pub mod subscription;

use async_graphql::{EmptyMutation, MergedObject, Schema};

pub use subscription::{OrderEvents, SubscriptionRoot};

/// Every query field: the storefront's catalog and carts, orders, staff and audit reads.
#[derive(MergedObject, Default)]
pub struct QueryRoot(
    catalog::CatalogQuery,
    catalog::CategoryQuery,
    carts::CartQuery,
    orders::OrderQuery,
    staff::StaffQuery,
    audit::AuditQuery,
    operations::OperationsQuery,
);

/// Writes go through the command API: the schema has no mutations.
pub type ShopSchema = Schema<QueryRoot, EmptyMutation, SubscriptionRoot>;

/// The schema's SDL, as committed in `schemas/graphql/schema.graphql`.
pub fn sdl() -> String {
    Schema::build(QueryRoot::default(), EmptyMutation, SubscriptionRoot)
        .finish()
        .sdl()
}
