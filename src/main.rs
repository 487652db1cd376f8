//! `shop`: one binary, a subcommand per role and per operation.

mod cli;
mod config;

/// mimalloc rather than the system allocator: JSON payloads and events are many small
/// allocations, and glibc's malloc/free showed up at the top of the rebuild's profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

use crate::config::{RoleConfig, StoreConfig};

#[derive(Parser, Debug)]
#[command(name = "shop", version, about = "event-sourced commerce backend")]
struct Shop {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::enum_variant_names)] // `command-api` is the role's name
enum Command {
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
        command: cli::audit::AuditCommand,
    },
    /// Staff operations on the checkout saga: work parked after bounded retries.
    Saga {
        #[command(subcommand)]
        command: cli::saga::SagaCommand,
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
        /// The projection (catalog, stock, orders).
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
        command: cli::projections::ProjectionsCommand,
    },
    /// A customer's personal data: export and erasure (GDPR).
    Customer {
        #[command(subcommand)]
        command: cli::customer::CustomerCommand,
    },
    /// Manage accounts.
    User {
        #[command(subcommand)]
        command: cli::user::UserCommand,
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
        scenario: cli::bench::Scenario,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    cli::init_tracing();
    let shop = Shop::parse();
    let outcome = match shop.command {
        Command::Migrate { stores } => cli::migrate::run(&stores).await,
        Command::Seed {
            stores,
            products,
            orders,
        } => cli::seed::run_with_volume(&stores, products, orders).await,
        Command::Audit { command } => cli::audit::run(command).await,
        Command::Saga { command } => cli::saga::run(command).await,
        Command::Serve { config } => cli::serve::run(&config, cli::serve::Roles::All).await,
        Command::CommandApi { config } => {
            cli::serve::run(&config, cli::serve::Roles::CommandApi).await
        }
        Command::SagaRunner { config } => {
            cli::serve::run(&config, cli::serve::Roles::SagaRunner).await
        }
        Command::QueryApi { config } => cli::serve::run(&config, cli::serve::Roles::QueryApi).await,
        Command::Relay { config } => cli::serve::run(&config, cli::serve::Roles::Relay).await,
        Command::Projector { config } => {
            cli::serve::run(&config, cli::serve::Roles::Projector).await
        }
        Command::Rebuild {
            stores,
            name,
            all,
            batch,
        } => cli::projections::rebuild(&stores, name.as_deref(), all, batch.max(1)).await,
        Command::Projections { command } => cli::projections::run(command).await,
        Command::Customer { command } => cli::customer::run(command).await,
        Command::User { command } => cli::user::run(command).await,
        Command::Bench { scenario } => cli::bench::run(scenario).await,
        Command::Probe { url } => cli::probe(&url).await,
    };
    // off the async runtime: the exporter's blocking client must not run on its threads
    let _ = tokio::task::spawn_blocking(cli::telemetry::flush_traces).await;
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
