//! The subcommands' bodies, one module each, and what they share.

pub mod audit;
pub mod bench;
pub mod migrate;
pub mod seed;
pub mod serve;

use anyhow::Context;
use cqrs_es::Aggregate;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::config::StoreConfig;

/// Logs to stderr; `RUST_LOG` filters, `SHOP_LOG_FORMAT=json` switches to JSON lines.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Connects to PostgreSQL, saying which URL failed (without its password).
pub async fn connect(stores: &StoreConfig) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(stores.db_max_connections)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect_with(stores.database_url.options.clone())
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", stores.database_url))
}

/// The event store of one aggregate type, with its upcasters and snapshot policy.
pub fn event_store<A>(pool: &PgPool) -> eventlog::PgEventStore<A>
where
    A: cqrs_es::Aggregate,
    A::Services: Default,
{
    let store =
        eventlog::PgEventStore::<A>::new(pool.clone()).with_upcasters(schemas::upcasters(A::TYPE));
    // inventory streams of hot SKUs grow without bound (every reservation is an event)
    if A::TYPE == domain::Inventory::TYPE {
        store.with_snapshots(eventlog::store::SnapshotPolicy {
            every: 200,
            version: 1,
        })
    } else {
        store
    }
}

/// Every migration of every crate, in order.
pub fn all_migrations() -> &'static [eventlog::migrate::Migration] {
    eventlog::migrate::MIGRATIONS
}

/// A progress bar on stderr with a rate, for long operations.
pub fn progress_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
        )
        .expect("progress template"),
    );
    bar.set_message(what.to_owned());
    bar
}
