//! shop's process managers: the checkout saga (reserve stock, authorize payment, confirm,
//! capture; compensate on failure or timeout), durable timers, the payment gateways and the
//! Stripe webhook.

pub mod payments;
