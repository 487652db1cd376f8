//! `shop bench relay`: the relay's throughput over a generated log (events/s, publish to
//! acknowledgement), then the end-to-end lag from commit to a Kafka consumer under a constant
//! rate of commands (p50/p95/p99/max).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::{Currency, InventoryCommand, InventoryEvent, Money, ProductEvent, Quantity, Sku};
use eventlog::source::EventSource;
use eventlog::{Actor, EventMetadata};

use super::bench_rebuild::Generator;
use crate::config::StoreConfig;

pub async fn relay(
    stores: &StoreConfig,
    brokers: &str,
    events: u64,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<ExitCode> {
    let pool = super::connect(stores).await?;
    // a log of `events` events: products and their stock
    let eur = Currency::parse("EUR").map_err(|e| anyhow::anyhow!("{e}"))?;
    let products = events / 2;
    let mut generator = Generator::new(&pool, products * 2, "generating")?;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..6].to_uppercase();
    for n in 0..products {
        let sku = format!("RLY-{tag}-{n:07}");
        let parsed = Sku::parse(sku.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
        generator.push(
            "product",
            &sku,
            ProductEvent::ProductCreated {
                sku: parsed.clone(),
                name: format!("relay product {n}"),
                description: "a product of the relay benchmark".into(),
                category: "bench".into(),
                price: Money::new(1_000, eur),
                created_at: Utc::now(),
            },
        )?;
        generator.push(
            "inventory",
            &sku,
            InventoryEvent::StockReceived {
                sku: parsed,
                quantity: Quantity::new(1_000).map_err(|e| anyhow::anyhow!("{e}"))?,
            },
        )?;
        if generator.pending.len() >= 10_000 {
            generator.flush().await?;
        }
    }
    generator.flush().await?;
    generator.bar.finish_and_clear();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // throughput: publish the whole log under a fresh checkpoint
    let subscription = format!("bench:relay:{tag}");
    let config = relay::RelayConfig {
        subscription: subscription.clone(),
        batch: 5_000,
        ..relay::RelayConfig::new(brokers)
    };
    let publisher = Arc::new(relay::Relay::new(pool.clone(), config)?);
    publisher.ensure_topics().await?;
    let total = eventlog::audit::count_events(&pool).await?;
    let bar = super::progress_bar(total, "publishing");
    let started = Instant::now();
    let mut published = 0u64;
    loop {
        let n = publisher.step().await? as u64;
        published += n;
        bar.set_position(published);
        if n == 0 {
            break;
        }
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "relay: {published} events published and acknowledged in {elapsed:.1} s = {:.0} events/s",
        published as f64 / elapsed
    );

    // end-to-end lag: commands at a constant rate, a consumer timing each from its commit
    let mut source = relay::KafkaSource::connect(&relay::SourceConfig {
        brokers: brokers.to_owned(),
        group: format!("bench-lag-{tag}"),
        aggregate_types: vec!["inventory".into()],
        poll: Duration::from_millis(500),
    })
    .await?;
    // read the history first (a new group starts at the beginning of the topics, which may hold
    // earlier runs too): until this run's stock events are all in; also the consumer's rate
    let history: i64 = products as i64;
    let bar = super::progress_bar(history as u64, "consuming the history");
    let drained = Instant::now();
    let mut consumed = 0u64;
    let mut read_total = 0u64;
    while consumed < history as u64 {
        let batch = source
            .next_batch(10_000)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        read_total += batch.len() as u64;
        let prefix = format!("RLY-{tag}-");
        consumed += batch
            .iter()
            .flatten()
            .filter(|e| e.aggregate_id.starts_with(&prefix))
            .count() as u64;
        bar.set_position(consumed);
        source
            .acknowledge()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(
            drained.elapsed() < Duration::from_secs(600),
            "the consumer read only {consumed} of this run's {history} events in 10 minutes"
        );
    }
    bar.finish_and_clear();
    let seconds_drained = drained.elapsed().as_secs_f64();
    println!(
        "consumer: {read_total} events read and committed in {seconds_drained:.1} s = {:.0} events/s",
        read_total as f64 / seconds_drained
    );
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let running = {
        let publisher = publisher.clone();
        tokio::spawn(async move { publisher.run(stop).await })
    };
    let stores_ = schemas::stores::Stores::new(&pool);
    let phase_start = Utc::now();
    let writer = tokio::spawn(async move {
        let metadata = EventMetadata::new(Actor::system("bench"));
        let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
        let started = Instant::now();
        for n in 0..rate * seconds {
            tokio::time::sleep_until((started + interval * n as u32).into()).await;
            let sku = format!("RLY-{tag}-{:07}", n % products.max(1));
            let Ok(parsed) = Sku::parse(sku.clone()) else {
                continue;
            };
            let command = InventoryCommand::ReceiveStock {
                sku: parsed,
                quantity: Quantity::new(1).expect("1 is a quantity"),
            };
            let _ = stores_.inventory.execute(&sku, command, &metadata).await;
        }
    });
    let mut lags: Vec<f64> = Vec::new();
    let expected = (rate * seconds) as usize;
    let deadline = Instant::now() + Duration::from_secs(seconds + 30);
    while lags.len() < expected && Instant::now() < deadline {
        let batch = source
            .next_batch(1_000)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let now = Utc::now();
        for event in batch.into_iter().flatten() {
            if event.recorded_at >= phase_start {
                lags.push(
                    (now - event.recorded_at).num_microseconds().unwrap_or(0) as f64 / 1_000.0,
                );
            }
        }
        source
            .acknowledge()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    writer.await?;
    let _ = stop_tx.send(true);
    running.await??;
    lags.sort_by(f64::total_cmp);
    let at = |p: f64| {
        lags.get(((lags.len() as f64 * p) as usize).min(lags.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "commit → consumer lag at {rate} commands/s: {} events, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lags.len(),
        at(0.50),
        at(0.95),
        at(0.99),
        lags.last().copied().unwrap_or(0.0)
    );
    Ok(if lags.len() < expected {
        eprintln!("only {} of {expected} events arrived", lags.len());
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
