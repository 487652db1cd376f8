//! `shop bench <scenario>`: measurements against the real stores, each with a progress line and a
//! final throughput line.
//!
//! - `append`: single commands through the event store (decide, append), with N concurrent
//!   writers; each command creates a product on a new stream. Concurrent commands share
//!   transactions (group commit) unless `--group-commit false`.
//! - `append-batch`: bulk appends of 1,000 events per transaction (imports, generators).

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Subcommand;
use domain::product::{Product, ProductCommand};
use domain::{Currency, Money, Sku};
use eventlog::group::{GroupCommitter, GroupConfig};
use eventlog::store::{append_bulk, NewEvent};
use eventlog::{Actor, EventMetadata};
use serde_json::json;

use crate::config::StoreConfig;

#[derive(Subcommand, Debug)]
pub enum Scenario {
    /// Single-command appends per second with N concurrent writers (each command its own
    /// product stream).
    Append {
        #[command(flatten)]
        stores: StoreConfig,
        /// Concurrent writers.
        #[arg(long, default_value_t = 1)]
        writers: u32,
        /// How long to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Exit non-zero above this fraction of failed commands.
        #[arg(long, default_value_t = 0.01)]
        max_error_rate: f64,
        /// Group commit (concurrent commands share transactions); `false`: one transaction per
        /// command, as before group commit.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        group_commit: bool,
        /// Group commit: groups in flight at once (default: the event store's).
        #[arg(long)]
        flushers: Option<usize>,
        /// Read a stream the store has not cached before deciding (as before), instead of
        /// deciding as on a new stream.
        #[arg(long)]
        read_unknown_streams: bool,
    },
    /// Bulk append throughput: events per second in 1,000-event transactions.
    AppendBatch {
        #[command(flatten)]
        stores: StoreConfig,
        /// Events to write in all.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Events per transaction.
        #[arg(long, default_value_t = 1_000)]
        batch: u64,
    },
    /// Checkouts end to end at a constant arrival rate: shoppers over REST (cart, line,
    /// check-out), the saga (local gateway), the orders projector — all in this process — timed
    /// from when each shopper was due to when the read model shows the order confirmed.
    Checkout {
        #[command(flatten)]
        stores: StoreConfig,
        /// Arrival rate, shoppers per second (open loop).
        #[arg(long, default_value_t = 100)]
        rate: u64,
        /// How long shoppers arrive.
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        /// Products the orders spread over (1 = every order on one hot SKU).
        #[arg(long, default_value_t = 100)]
        skus: u32,
        /// Exit non-zero above this fraction of checkouts not confirmed.
        #[arg(long, default_value_t = 0.01)]
        max_error_rate: f64,
    },
    /// Generates a log of N events and rebuilds every read model from it: events/s.
    Rebuild {
        #[command(flatten)]
        stores: StoreConfig,
        /// Events to generate.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Events per rebuild transaction (20,000 measured fastest: 5,000 → 102k, 20,000 →
        /// 118k, 50,000 → 113k orders events/s).
        #[arg(long, default_value_t = 20_000)]
        batch: i64,
    },
    /// Storefront reads through GraphQL at a constant arrival rate (a catalog page; a search with
    /// facets) over a generated catalog of N products: requests/s and latency percentiles.
    Browse {
        #[command(flatten)]
        stores: StoreConfig,
        /// Products in the catalog (generated when the log has fewer).
        #[arg(long, default_value_t = 100_000)]
        products: u64,
        /// Arrival rate, requests per second (open loop), per scenario.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// How long each scenario runs.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Exit non-zero above this fraction of failed requests.
        #[arg(long, default_value_t = 0.01)]
        max_error_rate: f64,
    },
    /// Relay throughput over a generated log, then commit → Kafka consumer lag at a constant
    /// rate of commands.
    Relay {
        #[command(flatten)]
        stores: StoreConfig,
        /// Kafka bootstrap servers.
        #[arg(long, env = "SHOP_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
        brokers: String,
        /// Events to generate and publish.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Commands per second in the lag phase.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// Length of the lag phase.
        #[arg(long, default_value_t = 15)]
        seconds: u64,
    },
    /// The cart over REST at a constant arrival rate: sessions of create, add, change, remove
    /// (guest carts, the seeded catalog): sessions/s and per-request latency percentiles.
    Cart {
        #[command(flatten)]
        stores: StoreConfig,
        /// Sessions started per second (open loop); each is four requests.
        #[arg(long, default_value_t = 100)]
        rate: u64,
        /// How long to run.
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        /// Exit non-zero above this fraction of failed sessions.
        #[arg(long, default_value_t = 0.01)]
        max_error_rate: f64,
    },
    /// Concurrent reservations on one SKU: reservations/s on a hot stream.
    HotSku {
        #[command(flatten)]
        stores: StoreConfig,
        /// Concurrent writers.
        #[arg(long, default_value_t = 16)]
        writers: u32,
        /// How long to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Units in stock: scarce, so the run also checks that nothing is oversold.
        #[arg(long, default_value_t = 5_000)]
        units: u32,
        /// Exit non-zero above this fraction of failed reservations (sold out is not a failure).
        #[arg(long, default_value_t = 0.01)]
        max_error_rate: f64,
    },
}

pub async fn run(scenario: Scenario) -> anyhow::Result<ExitCode> {
    match scenario {
        Scenario::Append {
            mut stores,
            writers,
            seconds,
            max_error_rate,
            group_commit,
            flushers,
            read_unknown_streams,
        } => {
            stores.db_max_connections = writers + 2 + flushers.unwrap_or(1) as u32;
            let options = AppendOptions {
                group_commit,
                flushers,
                read_unknown_streams,
            };
            append(
                &stores,
                writers,
                Duration::from_secs(seconds),
                max_error_rate,
                options,
            )
            .await
        }
        Scenario::AppendBatch {
            stores,
            events,
            batch,
        } => append_batch(&stores, events, batch.max(1)).await,
        Scenario::Checkout {
            mut stores,
            rate,
            seconds,
            skus,
            max_error_rate,
        } => {
            stores.db_max_connections = stores.db_max_connections.max(40);
            super::bench_checkout::checkout(
                &stores,
                rate.max(1),
                seconds,
                skus.max(1),
                max_error_rate,
            )
            .await
        }
        Scenario::Rebuild {
            stores,
            events,
            batch,
        } => super::bench_rebuild::rebuild(&stores, events, batch.max(1)).await,
        Scenario::Browse {
            stores,
            products,
            rate,
            seconds,
            max_error_rate,
        } => {
            super::bench_browse::browse(&stores, products, rate.max(1), seconds, max_error_rate)
                .await
        }
        Scenario::Relay {
            stores,
            brokers,
            events,
            rate,
            seconds,
        } => super::bench_relay::relay(&stores, &brokers, events, rate, seconds).await,
        Scenario::Cart {
            stores,
            rate,
            seconds,
            max_error_rate,
        } => super::bench_cart::cart(&stores, rate.max(1), seconds, max_error_rate).await,
        Scenario::HotSku {
            mut stores,
            writers,
            seconds,
            units,
            max_error_rate,
        } => {
            stores.db_max_connections = writers + 2;
            super::bench_checkout::hot_sku(
                &stores,
                writers,
                Duration::from_secs(seconds),
                units.max(1),
                max_error_rate,
            )
            .await
        }
    }
}

/// How `bench append` configures the event store.
#[derive(Clone, Copy, Debug)]
struct AppendOptions {
    group_commit: bool,
    flushers: Option<usize>,
    read_unknown_streams: bool,
}

impl AppendOptions {
    fn describe(&self) -> String {
        let mut parts = vec![if self.group_commit {
            format!(
                "group commit, {} flusher(s)",
                self.flushers.unwrap_or(GroupConfig::default().flushers)
            )
        } else {
            "one transaction per command".to_owned()
        }];
        if self.read_unknown_streams {
            parts.push("unknown streams read first".to_owned());
        }
        parts.join(", ")
    }
}

async fn append(
    stores: &StoreConfig,
    writers: u32,
    duration: Duration,
    max_error_rate: f64,
    options: AppendOptions,
) -> anyhow::Result<ExitCode> {
    let pool = super::connect(stores).await?;
    let mut store = schemas::stores::event_store::<Product>(&pool);
    store = match (options.group_commit, options.flushers) {
        (false, _) => store.without_group_commit(),
        (true, Some(flushers)) => store.with_group_committer(GroupCommitter::new(
            pool.clone(),
            GroupConfig {
                flushers: flushers.max(1),
                ..GroupConfig::default()
            },
        )),
        (true, None) => store,
    };
    if options.read_unknown_streams {
        store = store.reading_unknown_streams();
    }
    let store = Arc::new(store);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let eur = Currency::parse("EUR").map_err(|e| anyhow::anyhow!("{e}"))?;
    let metadata = EventMetadata::new(Actor::system("bench"));

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..writers {
        let (store, done, failed, metadata) = (
            store.clone(),
            done.clone(),
            failed.clone(),
            metadata.clone(),
        );
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let id = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
                let Ok(sku) = Sku::parse(format!("B-{id}")) else {
                    continue;
                };
                let command = ProductCommand::Create {
                    sku: sku.clone(),
                    name: "Bench product".into(),
                    description: "A product created by the append benchmark.".into(),
                    category: "bench".into(),
                    price: Money::new(1_000, eur),
                    created_at: chrono::Utc::now(),
                };
                let begun = Instant::now();
                match store.execute(sku.as_str(), command, &metadata).await {
                    Ok(_) => {
                        latencies.push(begun.elapsed().as_secs_f64() * 1_000.0);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        });
    }
    let progress = tokio::spawn({
        let done = done.clone();
        async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = done.load(Ordering::Relaxed);
                eprintln!("  {} commands, {} /s", now, now - last);
                last = now;
            }
        }
    });
    let mut latencies = Vec::new();
    while let Some(result) = tasks.join_next().await {
        latencies.extend(result?);
    }
    progress.abort();
    let outcome = super::load::Outcome {
        sent: done.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed),
        errors: failed.load(Ordering::Relaxed),
        latencies,
        seconds: started.elapsed().as_secs_f64(),
    };
    outcome.print(&format!("append x{writers} ({})", options.describe()), 0);
    Ok(outcome.exit_code(max_error_rate))
}

async fn append_batch(stores: &StoreConfig, events: u64, batch: u64) -> anyhow::Result<ExitCode> {
    const EVENTS_PER_STREAM: u64 = 10;
    let pool = super::connect(stores).await?;
    let bar = super::progress_bar(events, "appending");
    let metadata = serde_json::to_value(EventMetadata::new(Actor::system("bench")).to_map())?;
    let started = Instant::now();
    let mut written = 0;
    while written < events {
        let size = batch.min(events - written);
        let mut rows = Vec::with_capacity(size as usize);
        let mut stream = String::new();
        for n in 0..size {
            if n % EVENTS_PER_STREAM == 0 {
                stream = format!("BULK-{}", uuid::Uuid::new_v4().simple());
            }
            rows.push(NewEvent {
                aggregate_type: "inventory".into(),
                aggregate_id: stream.clone(),
                sequence: (n % EVENTS_PER_STREAM + 1) as i64,
                event_type: "StockAdjusted".into(),
                event_version: "1".into(),
                payload: json!({"StockAdjusted": {"delta": n as i64 % 7 + 1, "reason": "bulk benchmark"}}),
                metadata: metadata.clone(),
            });
        }
        let mut tx = pool.begin().await?;
        append_bulk(&mut tx, &rows).await?;
        tx.commit().await?;
        written += size;
        bar.set_position(written);
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "append-batch: {written} events in {elapsed:.2} s = {:.0} events/s ({batch} per transaction)",
        written as f64 / elapsed
    );
    Ok(ExitCode::SUCCESS)
}
