//! shop's process managers: the checkout saga, durable timers, the payment gateways. Built by the Checkout saga issue.
//!
//! Nothing is here yet: this crate marks where that role lives in the workspace
//! (see ARCHITECTURE.md).
