//! `shop bench checkout` and `shop bench hot-sku`: checkouts end to end — REST, the saga (real
//! PostgreSQL, local gateway), confirmed on the read side — and reservations on one hot SKU.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use chrono::Utc;
use domain::{Currency, InventoryCommand, Money, OrderId, ProductCommand, Quantity, Sku};
use eventlog::{Actor, EventMetadata};
use sagas::checkout::{CheckoutConfig, CheckoutSaga};
use sagas::payments::local::LocalGateway;
use sagas::runner::{RunnerConfig, SagaRunner};
use schemas::stores::Stores;
use serde_json::json;
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

/// The running services a checkout goes through, in this process: the command API on a random
/// port, the checkout saga (local gateway) and the orders read model's projector.
struct Services {
    base: String,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn start_services(pool: &sqlx::PgPool, stores: &Arc<Stores>) -> anyhow::Result<Services> {
    let (stop, watch) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let config = command_api::ApiConfig {
        auth_per_minute: 1_000_000,
        checkout_per_minute: 1_000_000,
        ..command_api::ApiConfig::default()
    };
    let state =
        command_api::AppState::new(pool.clone(), &accounts::tokens::Secret::random(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tasks.push(tokio::spawn(async move {
        let router = command_api::router(state);
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await;
    }));
    let saga = CheckoutSaga::new(
        pool.clone(),
        stores.clone(),
        Arc::new(LocalGateway::new()),
        CheckoutConfig::default(),
    );
    let runner = SagaRunner::new(pool.clone(), saga, RunnerConfig::default());
    let saga_stop = watch.clone();
    tasks.push(tokio::spawn(async move {
        let _ = runner.run(saga_stop).await;
    }));
    // the projector's future is not `Send` (see `shop serve`): a blocking thread of its own
    let (projector_pool, runtime) = (pool.clone(), tokio::runtime::Handle::current());
    tasks.push(tokio::task::spawn_blocking(move || {
        runtime.block_on(async {
            let orders: Vec<Box<dyn projections::pg::PgProjection>> =
                vec![Box::new(projections::pg::orders::Orders)];
            if let Err(error) =
                projections::pg::follow(&projector_pool, &orders, 1_000, watch).await
            {
                eprintln!("orders projector stopped: {error}");
            }
        });
    }));
    Ok(Services { base, stop, tasks })
}

impl Services {
    async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

/// One shopper over REST: a guest cart, one line of `sku`, check-out. The order id, or `None`
/// when a request failed.
async fn check_out(client: &reqwest::Client, base: &str, sku: &str) -> Option<Uuid> {
    let created: serde_json::Value = client
        .post(format!("{base}/api/carts"))
        .json(&json!({}))
        .send()
        .await
        .ok()
        .filter(|r| r.status().is_success())?
        .json()
        .await
        .ok()?;
    let cart = created["cart_id"].as_str()?.to_owned();
    // the guest cart's secret, answered once: every later request sends it
    let cart_token = created["cart_token"].as_str()?.to_owned();
    client
        .post(format!("{base}/api/carts/{cart}/items"))
        .header("cart-token", &cart_token)
        .json(&json!({"sku": sku, "quantity": 1}))
        .send()
        .await
        .ok()
        .filter(|r| r.status().is_success())?;
    let accepted: serde_json::Value = client
        .post(format!("{base}/api/carts/{cart}/checkout"))
        .header("cart-token", &cart_token)
        .json(&json!({
            "shipping_address": {"name": "Bench", "line1": "1 Main St", "city": "Berlin",
                                 "postal_code": "10115", "country": "DE"},
            "payment_method": "pm_card_visa"
        }))
        .send()
        .await
        .ok()
        .filter(|r| r.status() == reqwest::StatusCode::ACCEPTED)?
        .json()
        .await
        .ok()?;
    accepted["order_id"].as_str()?.parse().ok()
}

/// Orders waiting to be seen settled on the read side: id → when the shopper was due to start.
type Pending = Arc<Mutex<HashMap<Uuid, Instant>>>;

/// What the read side showed: (ms from due to confirmed, for each confirmed order; orders seen
/// failed or cancelled).
type Observed = Arc<Mutex<(Vec<f64>, u64)>>;

/// Polls the orders read model every 10 ms for the pending orders' settled status.
async fn observe_read_side(
    pool: sqlx::PgPool,
    pending: Pending,
    observed: Observed,
    bar: indicatif::ProgressBar,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let ids: Vec<Uuid> = lock(&pending).keys().copied().collect();
        if !ids.is_empty() {
            let settled: Vec<(Uuid, String)> = sqlx::query_as(
                "SELECT order_id, status FROM rm_orders.orders
                  WHERE order_id = ANY($1) AND status IN ('confirmed', 'failed', 'cancelled')",
            )
            .bind(&ids)
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
            let seen = Instant::now();
            let mut pending = lock(&pending);
            let mut observed = lock(&observed);
            for (order, status) in settled {
                if let Some(due) = pending.remove(&order) {
                    if status == "confirmed" {
                        observed.0.push((seen - due).as_secs_f64() * 1_000.0);
                    } else {
                        observed.1 += 1;
                    }
                    bar.inc(1);
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(10), stop.changed()).await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Checkouts at a constant arrival rate through the whole system: shoppers over REST (cart,
/// line, check-out), the saga (order, stock, payment, confirmation), the orders projector; the
/// latency is from when a shopper was due to when the read model shows the order confirmed.
pub async fn checkout(
    stores: &StoreConfig,
    rate: u64,
    seconds: u64,
    skus: u32,
    max_error_rate: f64,
) -> anyhow::Result<ExitCode> {
    let pool = super::connect(stores).await?;
    let event_stores = Arc::new(Stores::new(&pool));
    let total = rate * seconds;
    let units = u32::try_from(total).unwrap_or(u32::MAX).max(1);
    let mut catalog = Vec::new();
    for _ in 0..skus {
        catalog.push(stocked_product(&event_stores, units).await?);
    }
    let services = start_services(&pool, &event_stores).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(512)
        .build()?;
    let pending: Pending = Arc::default();
    let observed: Observed = Arc::default();
    let submit_failures = Arc::new(AtomicU64::new(0));
    let bar = super::progress_bar(total, "checkouts confirmed on the read side");
    let (stop_observer, observer_stop) = tokio::sync::watch::channel(false);
    let observer = tokio::spawn(observe_read_side(
        pool.clone(),
        pending.clone(),
        observed.clone(),
        bar.clone(),
        observer_stop,
    ));

    // open loop: shoppers start on schedule, whether or not earlier ones have finished
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut shoppers = tokio::task::JoinSet::new();
    for n in 0..total {
        let due = started + interval * n as u32;
        tokio::time::sleep_until(due.into()).await;
        let sku = catalog[(n % u64::from(skus)) as usize].to_string();
        let (client, base, pending, failures, bar) = (
            client.clone(),
            services.base.clone(),
            pending.clone(),
            submit_failures.clone(),
            bar.clone(),
        );
        shoppers.spawn(async move {
            match check_out(&client, &base, &sku).await {
                Some(order) => {
                    lock(&pending).insert(order, due);
                }
                None => {
                    failures.fetch_add(1, Ordering::Relaxed);
                    bar.inc(1);
                }
            }
        });
    }
    while shoppers.join_next().await.is_some() {}
    // every accepted checkout gets a bounded time to show up settled
    let deadline = Instant::now() + Duration::from_secs(60);
    while !lock(&pending).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = stop_observer.send(true);
    let _ = observer.await;
    bar.finish_and_clear();
    services.stop().await;

    let (latencies, settled_otherwise) = std::mem::take(&mut *lock(&observed));
    let unsettled = lock(&pending).len() as u64;
    let failures = submit_failures.load(Ordering::Relaxed);
    let outcome = super::load::Outcome {
        sent: total,
        errors: failures + settled_otherwise + unsettled,
        latencies,
        seconds: elapsed,
    };
    outcome.print("checkout", rate);
    println!(
        "checkout: {} confirmed on the read side of {total} started over {skus} SKUs (due → confirmed in rm_orders); {failures} failed requests, {settled_otherwise} failed or cancelled orders, {unsettled} not settled within 60 s",
        outcome.latencies.len()
    );
    Ok(outcome.exit_code(max_error_rate))
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
    Ok(outcome.exit_code(max_error_rate))
}
