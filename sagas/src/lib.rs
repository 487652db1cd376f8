//! shop's process managers: the checkout saga (reserve stock, authorize payment, confirm,
//! capture; compensate on failure or timeout), durable timers, the payment gateways and the
//! Stripe webhook.

pub mod checkout;
pub mod notifier;
pub mod order_numbers;
pub mod payments;
pub mod runner;
pub mod timers;
pub mod webhooks;

/// Migrations of the sagas' tables (versions 300–399).
pub const MIGRATIONS: &[eventlog::migrate::Migration] = &[
    eventlog::migrate::Migration {
        version: 300,
        name: "sagas",
        sql: include_str!("../migrations/0300_sagas.sql"),
    },
    eventlog::migrate::Migration {
        version: 301,
        name: "local_payments",
        sql: include_str!("../migrations/0301_local_payments.sql"),
    },
    eventlog::migrate::Migration {
        version: 302,
        name: "notifications",
        sql: include_str!("../migrations/0302_notifications.sql"),
    },
    eventlog::migrate::Migration {
        version: 303,
        name: "timer_wakes",
        sql: include_str!("../migrations/0303_timer_wakes.sql"),
    },
];
