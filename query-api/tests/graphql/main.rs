//! The GraphQL API over real HTTP and WebSocket against the real PostgreSQL and Redis: events
//! are written through the event store, the real projectors build the read models, and every
//! field, auth rule, pagination edge, limit, the subscription and read-your-writes are checked.

mod harness;

mod account;
mod audit;
mod carts;
mod catalog;
mod consistency;
mod images;
mod limits;
mod operations;
mod orders;
mod reviews;
mod subscription;
