//! The command line ([`Shop`]), the subcommands' bodies, one module each, and what they share.

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
use clap::{Parser, Subcommand};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::app::Roles;
use crate::config::{RoleConfig, StoreConfig};

/// The command line: one subcommand per role and per operation.
#[derive(Parser, Debug)]
#[command(name = "shop", version, about = "event-sourced commerce backend")]
pub struct Shop {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::enum_variant_names)] // `command-api` is the role's name
pub enum Command {
    /// Apply database migrations (idempotent).
    Migrate {
        #[command(flatten)]
        stores: StoreConfig,
    },
    /// Load a demo catalog with stock (idempotent: existing products are left alone); with
    /// `--products`/`--orders`, also generate realistic volumes in bulk (benchmark databases).
    Seed {
        #[command(flatten)]
        stores: StoreConfig,
        /// Generated products (`CAT-0000000`...) with stock, beyond the demo catalog.
        #[arg(long, default_value_t = 0)]
        products: u64,
        /// Generated paid orders over the generated products (8 events each).
        #[arg(long, default_value_t = 0)]
        orders: u64,
    },
    /// Auditor operations on the event log.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Staff operations on the checkout saga: work parked after bounded retries.
    Saga {
        #[command(subcommand)]
        command: saga::SagaCommand,
    },
    /// Run every role in one process.
    Serve {
        #[command(flatten)]
        config: RoleConfig,
    },
    /// Run the command API (and the Stripe webhook) only.
    CommandApi {
        #[command(flatten)]
        config: RoleConfig,
    },
    /// Run the checkout saga, its timers and the notifier only.
    SagaRunner {
        #[command(flatten)]
        config: RoleConfig,
    },
    /// Run the GraphQL query API only (with this replica's search index).
    QueryApi {
        #[command(flatten)]
        config: RoleConfig,
    },
    /// Run the Kafka relay only (publishes the log to SHOP_KAFKA_BROKERS).
    Relay {
        #[command(flatten)]
        config: RoleConfig,
    },
    /// Run the projectors only.
    Projector {
        #[command(flatten)]
        config: RoleConfig,
    },
    /// Rebuild a read model from the whole log into a new version, then swap it in.
    Rebuild {
        #[command(flatten)]
        stores: StoreConfig,
        /// The projection (catalog, stock, orders, reviews).
        name: Option<String>,
        /// Rebuild every projection.
        #[arg(long)]
        all: bool,
        /// Events per transaction (bigger batches amortize each statement; see the README).
        #[arg(long, default_value_t = 20_000)]
        batch: i64,
    },
    /// Read-model operations.
    Projections {
        #[command(subcommand)]
        command: projections::ProjectionsCommand,
    },
    /// A customer's personal data: export and erasure (GDPR).
    Customer {
        #[command(subcommand)]
        command: customer::CustomerCommand,
    },
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: user::UserCommand,
    },
    /// Health check for containers without curl: GET a URL, exit 0 on a 2xx answer within 3 s.
    Probe {
        #[arg(
            env = "SHOP_PROBE_URL",
            default_value = "http://127.0.0.1:9090/health/live"
        )]
        url: String,
    },
    /// Benchmarks against the real stores.
    Bench {
        #[command(subcommand)]
        scenario: bench::Scenario,
    },
}

impl Shop {
    /// Runs the subcommand.
    pub async fn run(self) -> anyhow::Result<std::process::ExitCode> {
        match self.command {
            Command::Migrate { stores } => migrate::run(&stores).await,
            Command::Seed {
                stores,
                products,
                orders,
            } => seed::run_with_volume(&stores, products, orders).await,
            Command::Audit { command } => audit::run(command).await,
            Command::Saga { command } => saga::run(command).await,
            Command::Serve { config } => serve::run(&config, Roles::All).await,
            Command::CommandApi { config } => serve::run(&config, Roles::CommandApi).await,
            Command::SagaRunner { config } => serve::run(&config, Roles::SagaRunner).await,
            Command::QueryApi { config } => serve::run(&config, Roles::QueryApi).await,
            Command::Relay { config } => serve::run(&config, Roles::Relay).await,
            Command::Projector { config } => serve::run(&config, Roles::Projector).await,
            Command::Rebuild {
                stores,
                name,
                all,
                batch,
            } => projections::rebuild(&stores, name.as_deref(), all, batch.max(1)).await,
            Command::Projections { command } => projections::run(command).await,
            Command::Customer { command } => customer::run(command).await,
            Command::User { command } => user::run(command).await,
            Command::Bench { scenario } => bench::run(scenario).await,
            Command::Probe { url } => probe(&url).await,
        }
    }
}

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
