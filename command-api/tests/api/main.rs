//! The command API over real HTTP against the real PostgreSQL: every route, its auth rule, the
//! error codes and the idempotency rules. The app is spawned on a random port with a fresh
//! database per test (`harness`); one module per resource or concern.

mod harness;

mod auth;
mod carts;
mod catalog;
mod fuzz;
mod idempotency;
mod input;
mod openapi;
mod orders;
mod read_models;
