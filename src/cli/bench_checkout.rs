//! `shop bench checkout` and `shop bench hot-sku`: the checkout saga end to end in process
//! (real PostgreSQL, local gateway), and reservations on one hot SKU.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use chrono::Utc;
use domain::cart::{CartLine, CartOwner};
use domain::{
    Address, CartCommand, Currency, InventoryCommand, Money, OrderId, ProductCommand, Quantity, Sku,
};
use eventlog::{Actor, EventMetadata};
use sagas::checkout::{CheckoutConfig, CheckoutSaga};
use sagas::payments::local::LocalGateway;
use sagas::runner::{RunnerConfig, SagaRunner};
use schemas::stores::Stores;
use uuid::Uuid;

use crate::config::StoreConfig;

fn metadata() -> EventMetadata {
    EventMetadata::new(Actor::system("bench"))
}

/// A product with plenty of stock, on a fresh SKU.
async fn stocked_product(stores: &Stores, units: u32) -> anyhow::Result<Sku> {
    let sku = Sku::parse(format!(
        "BENCH-{}",
        &Uuid::new_v4().simple().to_string()[..12].to_uppercase()
    ))
    .map_err(|e| anyhow!("{e}"))?;
    let eur = Currency::parse("EUR").map_err(|e| anyhow!("{e}"))?;
    let create = ProductCommand::Create {
        sku: sku.clone(),
        name: "Bench product".into(),
        description: String::new(),
        category: "bench".into(),
        price: Money::new(1_500, eur),
        created_at: Utc::now(),
    };
    stores
        .products
        .execute(sku.as_str(), create, &metadata())
        .await?;
    let receive = InventoryCommand::ReceiveStock {
        sku: sku.clone(),
        quantity: Quantity::new(units).map_err(|e| anyhow!("{e}"))?,
    };
    stores
        .inventory
        .execute(sku.as_str(), receive, &metadata())
        .await?;
    Ok(sku)
}

/// Opens a cart with one line of `sku` and checks it out.
async fn check_out(stores: &Stores, sku: &Sku) -> anyhow::Result<()> {
    let eur = Currency::parse("EUR").map_err(|e| anyhow!("{e}"))?;
    let cart = Uuid::new_v4().to_string();
    let line = CartLine {
        sku: sku.clone(),
        quantity: Quantity::new(1).map_err(|e| anyhow!("{e}"))?,
        unit_price: Money::new(1_500, eur),
    };
    let commands = [
        CartCommand::Create {
            owner: CartOwner::Guest,
            currency: eur,
            created_at: Utc::now(),
        },
        CartCommand::AddItem {
            sku: line.sku.clone(),
            quantity: line.quantity,
            unit_price: line.unit_price,
        },
        CartCommand::CheckOut {
            order_id: OrderId::new(Uuid::new_v4()),
            priced_lines: vec![line],
            shipping_address: Address::new("Bench", "1 Main St", None, "Berlin", "10115", "DE")
                .map_err(|e| anyhow!("{e}"))?,
            payment_method: "pm_card_visa".into(),
            checked_out_at: Utc::now(),
        },
    ];
    for command in commands {
        stores.carts.execute(&cart, command, &metadata()).await?;
    }
    Ok(())
}

pub async fn checkout(
    stores: &StoreConfig,
    orders: u64,
    rate: u64,
    skus: u32,
) -> anyhow::Result<ExitCode> {
    let pool = super::connect(stores).await?;
    let event_stores = Arc::new(Stores::new(&pool));
    let units = u32::try_from(orders).unwrap_or(u32::MAX).max(1);
    let mut catalog = Vec::new();
    for _ in 0..skus {
        catalog.push(stocked_product(&event_stores, units).await?);
    }
    let since = Utc::now();
    let (stop, watch) = tokio::sync::watch::channel(false);
    let saga = CheckoutSaga::new(
        pool.clone(),
        event_stores.clone(),
        Arc::new(LocalGateway::new()),
        CheckoutConfig::default(),
    );
    let runner = SagaRunner::new(pool.clone(), saga, RunnerConfig::default());
    let running = tokio::spawn(runner.run(watch));

    // open loop: checkouts start on schedule, whether or not earlier ones have finished
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let failed = Arc::new(AtomicU64::new(0));
    let mut submitting = tokio::task::JoinSet::new();
    for n in 0..orders {
        tokio::time::sleep_until((started + interval * n as u32).into()).await;
        let sku = catalog[(n % u64::from(skus)) as usize].clone();
        let (stores, failed) = (event_stores.clone(), failed.clone());
        submitting.spawn(async move {
            if check_out(&stores, &sku).await.is_err() {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while submitting.join_next().await.is_some() {}
    let submitted = started.elapsed().as_secs_f64();
    eprintln!("  {orders} checkouts submitted in {submitted:.1} s; waiting for the saga");

    let deadline = Instant::now() + Duration::from_secs(300);
    let mut done = 0;
    while Instant::now() < deadline {
        done = settled(&pool, since).await?;
        eprintln!("  {done}/{orders} settled");
        if done >= orders as i64 - failed.load(Ordering::Relaxed) as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    let _ = running.await;

    // time from check-out to confirmed, per order, from the events' record times
    let latencies: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM done.recorded_at - started.recorded_at)::float8 * 1000
           FROM events started
           JOIN events done ON done.aggregate_type = 'checkout' AND done.aggregate_id = started.aggregate_id
                           AND done.event_type = 'CheckoutCompleted'
          WHERE started.aggregate_type = 'checkout' AND started.event_type = 'CheckoutStarted'
            AND started.recorded_at >= $1
          ORDER BY 1",
    )
    .bind(since)
    .fetch_all(&pool)
    .await?;
    let confirmed = latencies.len();
    let percentile = |p: f64| {
        latencies
            .get(((confirmed as f64 * p) as usize).min(confirmed.saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let failures = failed.load(Ordering::Relaxed);
    println!(
        "checkout: {confirmed} of {orders} confirmed in {elapsed:.1} s = {:.0} checkouts/s (offered {rate}/s over {skus} SKUs); check-out to confirmed p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {failures} submit errors; {done} settled",
        confirmed as f64 / elapsed,
        percentile(0.50),
        percentile(0.95),
        percentile(0.99),
        latencies.last().copied().unwrap_or(0.0),
    );
    Ok(if confirmed as u64 == orders && failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn settled(pool: &sqlx::PgPool, since: chrono::DateTime<Utc>) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'checkout'
            AND event_type IN ('CheckoutCompleted', 'CheckoutFailed') AND recorded_at >= $1",
    )
    .bind(since)
    .fetch_one(pool)
    .await?)
}

pub async fn hot_sku(
    stores: &StoreConfig,
    writers: u32,
    duration: Duration,
    units: u32,
    max_error_rate: f64,
) -> anyhow::Result<ExitCode> {
    let pool = super::connect(stores).await?;
    let event_stores = Arc::new(Stores::new(&pool));
    let sku = stocked_product(&event_stores, units).await?;
    let one = Quantity::new(1).map_err(|e| anyhow!("{e}"))?;
    let reserved = Arc::new(AtomicU64::new(0));
    let sold_out = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..writers {
        let (stores, sku, reserved, sold_out, failed, latencies) = (
            event_stores.clone(),
            sku.clone(),
            reserved.clone(),
            sold_out.clone(),
            failed.clone(),
            latencies.clone(),
        );
        tasks.spawn(async move {
            let mut mine = Vec::new();
            while started.elapsed() < duration {
                let command = InventoryCommand::Reserve {
                    order_id: OrderId::new(Uuid::new_v4()),
                    quantity: one,
                    expires_at: Utc::now() + chrono::Duration::minutes(15),
                };
                let sent = Instant::now();
                match stores
                    .inventory
                    .execute(sku.as_str(), command, &metadata())
                    .await
                {
                    Ok(receipt) => {
                        // a refusal is an event (`ReservationRefused`), not an error
                        let got = receipt
                            .events
                            .iter()
                            .any(|e| matches!(e, domain::InventoryEvent::StockReserved { .. }));
                        if got { &reserved } else { &sold_out }.fetch_add(1, Ordering::Relaxed);
                        mine.push(sent.elapsed().as_secs_f64() * 1_000.0);
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                };
            }
            latencies
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(mine);
        });
    }
    let progress = tokio::spawn({
        let reserved = reserved.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                eprintln!("  {} reservations", reserved.load(Ordering::Relaxed));
            }
        }
    });
    while tasks.join_next().await.is_some() {}
    progress.abort();
    let elapsed = started.elapsed().as_secs_f64();
    let (count, refused, errors) = (
        reserved.load(Ordering::Relaxed),
        sold_out.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    let outcome = super::load::Outcome {
        sent: count + refused + errors,
        errors,
        latencies: std::mem::take(
            &mut *latencies
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ),
        seconds: elapsed,
    };
    outcome.print("hot-sku attempts", 0);
    println!(
        "hot-sku: {writers} writers on one SKU of {units} units: {count} reserved ({:.0}/s), {refused} refused as sold out, {errors} failed",
        count as f64 / elapsed
    );
    // no oversell: the stream's own state and the count of acknowledged reservations agree
    let events = eventlog::log::read_stream(&pool, "inventory", sku.as_str()).await?;
    let state: domain::Inventory = schemas::fold::fold(&events)?;
    println!(
        "stock after the run: on hand {}, reserved {}, available {}",
        state.on_hand(),
        state.reserved(),
        state.available()
    );
    let oversold = state.reserved() > state.on_hand() || count > u64::from(units);
    let lost = state.reserved() != count;
    if oversold || lost {
        eprintln!("INVARIANT BROKEN: oversold={oversold}, acknowledged {count} but the stream holds {} reserved", state.reserved());
        return Ok(ExitCode::FAILURE);
    }
    Ok(if outcome.error_rate() > max_error_rate {
        eprintln!("error rate above {:.1}%", max_error_rate * 100.0);
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
