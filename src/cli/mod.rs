//! The subcommands' bodies, one module each, and what they share.

pub mod audit;
pub mod bench;
pub mod bench_browse;
pub mod bench_cart;
pub mod bench_checkout;
pub mod bench_rebuild;
pub mod bench_relay;
pub mod customer;
pub mod load;
pub mod migrate;
pub mod projections;
pub mod read_health;
pub mod saga;
pub mod seed;
pub mod serve;
pub mod telemetry;
pub mod user;

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::config::StoreConfig;

/// Logs to stderr; `RUST_LOG` filters, `SHOP_LOG_FORMAT=json` switches to JSON lines.
pub fn init_tracing() {
    telemetry::init_logs();
}

/// `shop probe`: a health check a container can run without curl.
pub async fn probe(url: &str) -> anyhow::Result<std::process::ExitCode> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()?;
    match client.get(url).send().await {
        Ok(response) if response.status().is_success() => Ok(std::process::ExitCode::SUCCESS),
        Ok(response) => {
            eprintln!("{url}: {}", response.status());
            Ok(std::process::ExitCode::FAILURE)
        }
        Err(error) => {
            eprintln!("{url}: {error}");
            Ok(std::process::ExitCode::FAILURE)
        }
    }
}

/// Connects to PostgreSQL, saying which URL failed (without its password).
pub async fn connect(stores: &StoreConfig) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(stores.db_max_connections)
        .acquire_timeout(std::time::Duration::from_secs(10))
        // no ping before every query: a broken connection fails its query, which is retried or
        // reported like any database error; the ping would double the round trips
        .test_before_acquire(false)
        .connect_with(stores.database_url.options.clone())
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", stores.database_url))
}

/// Every migration of every crate, in order.
pub fn all_migrations() -> Vec<&'static eventlog::migrate::Migration> {
    eventlog::migrate::MIGRATIONS
        .iter()
        .chain(command_api::MIGRATIONS)
        .chain(sagas::MIGRATIONS)
        .chain(relay::MIGRATIONS)
        .chain(schemas::personal::MIGRATIONS)
        .collect()
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
