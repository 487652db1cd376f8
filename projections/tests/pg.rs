//! The PostgreSQL read models against the real database: a projection followed batch by batch
//! equals a fresh rebuild after a random workload (contents, not counts); a batch that dies
//! before commit changes nothing; a rebuild while writes continue loses nothing and readers never
//! see a half-built version.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use domain::order::OrderLine;
use domain::{
    Address, CartId, Currency, CustomerId, InventoryCommand, Money, OrderCommand, OrderId,
    OrderNumber, PaymentCommand, PaymentId, ProductCommand, Quantity, RefundId, Sku,
};
use eventlog::testing::TestDatabase;
use eventlog::{log, Actor, EventMetadata, LogPosition};
use projections::pg::{self, PgProjection};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use schemas::stores::Stores;
use sqlx::PgPool;
use uuid::Uuid;

fn meta() -> EventMetadata {
    EventMetadata::new(Actor::system("test"))
}

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").unwrap())
}

fn qty(n: u32) -> Quantity {
    Quantity::new(n).unwrap()
}

/// Writes `rounds` random commands of every kind; rejected ones are simply skipped.
async fn random_workload(stores: &Stores, seed: u64, rounds: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let skus: Vec<String> = (0..8).map(|n| format!("SKU-{seed}-{n}")).collect();
    let mut orders: Vec<(OrderId, PaymentId, String)> = Vec::new();
    for sku in &skus {
        let create = ProductCommand::Create {
            sku: Sku::parse(sku.clone()).unwrap(),
            name: format!("Product {sku}"),
            description: "random".into(),
            category: ["audio", "home", "toys"][rng.random_range(0..3)].into(),
            price: eur(rng.random_range(100..10_000)),
            created_at: Utc::now(),
        };
        stores.products.execute(sku, create, &meta()).await.unwrap();
    }
    for _ in 0..rounds {
        let sku = skus[rng.random_range(0..skus.len())].clone();
        let sku_value = Sku::parse(sku.clone()).unwrap();
        let picked = if orders.is_empty() {
            None
        } else {
            Some(orders[rng.random_range(0..orders.len())].clone())
        };
        match rng.random_range(0..10) {
            0 => {
                let command = ProductCommand::Reprice {
                    price: eur(rng.random_range(100..10_000)),
                };
                let _ = stores.products.execute(&sku, command, &meta()).await;
            }
            1 => {
                let command = ProductCommand::Rename {
                    name: format!("Renamed {}", rng.random_range(0..1000)),
                };
                let _ = stores.products.execute(&sku, command, &meta()).await;
            }
            2 | 3 => {
                let command = InventoryCommand::ReceiveStock {
                    sku: sku_value.clone(),
                    quantity: qty(rng.random_range(1..20)),
                };
                let _ = stores.inventory.execute(&sku, command, &meta()).await;
            }
            4 => {
                let command = InventoryCommand::AdjustStock {
                    delta: rng.random_range(-3..3),
                    reason: "count".into(),
                };
                let _ = stores.inventory.execute(&sku, command, &meta()).await;
            }
            5 | 6 => {
                // an order: stock reserved, placed, payment requested
                let order = OrderId::new(Uuid::new_v4());
                let payment = PaymentId::new(Uuid::new_v4());
                let quantity = qty(rng.random_range(1..3));
                let reserve = InventoryCommand::Reserve {
                    order_id: order,
                    quantity,
                    expires_at: Utc::now() + chrono::Duration::minutes(5),
                };
                let _ = stores.inventory.execute(&sku, reserve, &meta()).await;
                let place = OrderCommand::Place {
                    order_number: OrderNumber(orders.len() as u64 + 1),
                    customer: Some(CustomerId::new(Uuid::new_v4())),
                    cart_id: CartId::new(Uuid::new_v4()),
                    lines: vec![OrderLine {
                        sku: sku_value.clone(),
                        name: sku.clone(),
                        quantity,
                        unit_price: eur(1500),
                    }],
                    currency: Currency::parse("EUR").unwrap(),
                    discount: eur(0),
                    tax: eur(285 * i64::from(quantity.get())),
                    shipping: eur(499),
                    shipping_address: Address::new("A", "1 Main St", None, "Berlin", "10115", "DE")
                        .unwrap(),
                    payment_method: "pm_card_visa".into(),
                    placed_at: Utc::now(),
                };
                stores
                    .orders
                    .execute(&order.to_string(), place, &meta())
                    .await
                    .unwrap();
                let request = PaymentCommand::Request {
                    order_id: order,
                    amount: eur(2284),
                    method: "pm".into(),
                    requested_at: Utc::now(),
                };
                stores
                    .payments
                    .execute(&payment.to_string(), request, &meta())
                    .await
                    .unwrap();
                orders.push((order, payment, sku.clone()));
            }
            7 => {
                if let Some((order, payment, sku)) = picked {
                    let id = order.to_string();
                    let pay = payment.to_string();
                    let now = Utc::now();
                    let _ = stores
                        .orders
                        .execute(&id, OrderCommand::MarkStockReserved { at: now }, &meta())
                        .await;
                    let authorize = PaymentCommand::Authorize {
                        provider_ref: "pi".into(),
                        at: now,
                    };
                    let _ = stores.payments.execute(&pay, authorize, &meta()).await;
                    let confirm = OrderCommand::Confirm {
                        payment_id: payment,
                        at: now,
                    };
                    let _ = stores.orders.execute(&id, confirm, &meta()).await;
                    let commit = InventoryCommand::CommitReservation { order_id: order };
                    let _ = stores.inventory.execute(&sku, commit, &meta()).await;
                    let capture = PaymentCommand::Capture {
                        amount: eur(2284),
                        at: now,
                    };
                    let _ = stores.payments.execute(&pay, capture, &meta()).await;
                }
            }
            8 => {
                if let Some((order, payment, _)) = picked {
                    let id = order.to_string();
                    if rng.random_bool(0.5) {
                        let ship = OrderCommand::Ship {
                            tracking: Some("T".into()),
                            at: Utc::now(),
                        };
                        let _ = stores.orders.execute(&id, ship, &meta()).await;
                    } else {
                        let refund_id = RefundId::new(Uuid::new_v4());
                        let refund = OrderCommand::Refund {
                            refund_id,
                            amount: eur(500),
                            reason: "r".into(),
                            at: Utc::now(),
                        };
                        let _ = stores.orders.execute(&id, refund, &meta()).await;
                        let refund = PaymentCommand::Refund {
                            refund_id,
                            amount: eur(500),
                            at: Utc::now(),
                        };
                        let _ = stores
                            .payments
                            .execute(&payment.to_string(), refund, &meta())
                            .await;
                    }
                }
            }
            _ => {
                if let Some((order, _, sku)) = picked {
                    let cancel = OrderCommand::Cancel {
                        reason: "changed mind".into(),
                        by: domain::order::CancelledBy::Customer,
                        at: Utc::now(),
                    };
                    let _ = stores
                        .orders
                        .execute(&order.to_string(), cancel, &meta())
                        .await;
                    let release = InventoryCommand::ReleaseReservation {
                        order_id: order,
                        reason: "cancelled".into(),
                    };
                    let _ = stores.inventory.execute(&sku, release, &meta()).await;
                }
            }
        }
    }
}

/// Every table of a projection's live schema as sorted JSON text: its contents.
async fn contents(pool: &PgPool, projection: &dyn PgProjection) -> Vec<String> {
    let schema = pg::live_schema(projection);
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY 1",
    )
    .bind(&schema)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut all = Vec::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT row_to_json(t)::text FROM {schema}.{table} t ORDER BY 1"
        ))
        .fetch_all(pool)
        .await
        .unwrap();
        all.push(format!("{table}: {}", rows.join("\n")));
    }
    all
}

/// Waits until every event written so far is readable (the xmin horizon is cluster-wide).
async fn settled_head(pool: &PgPool) -> LogPosition {
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .unwrap();
    for _ in 0..500 {
        let visible = log::read_after(pool, LogPosition::START, 1_000_000)
            .await
            .unwrap();
        if visible.len() as i64 >= total {
            return visible.last().map(|e| e.position).unwrap_or_default();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the log never settled");
}

async fn follow_to_head(pool: &PgPool, projection: &dyn PgProjection, batch: i64) {
    settled_head(pool).await;
    pg::ensure_live(pool, projection).await.unwrap();
    while pg::step(pool, projection, batch).await.unwrap() > 0 {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_projection_followed_in_small_batches_equals_a_fresh_rebuild() {
    let db = TestDatabase::create(eventlog::migrate::MIGRATIONS, 8).await;
    let stores = Stores::new(&db.pool);
    random_workload(&stores, 7, 300).await;
    for projection in pg::all() {
        follow_to_head(&db.pool, projection.as_ref(), 7).await;
        let followed = contents(&db.pool, projection.as_ref()).await;
        assert!(
            followed.iter().any(|t| t.contains('{')),
            "{} projected something",
            projection.name()
        );
        let mut reported = Vec::new();
        let done = pg::rebuild(&db.pool, projection.as_ref(), 1_000, |p| {
            reported.push(p.events)
        })
        .await
        .unwrap();
        assert!(done.events > 0 && !reported.is_empty());
        assert_eq!(
            contents(&db.pool, projection.as_ref()).await,
            followed,
            "{} differs from a rebuild",
            projection.name()
        );
        let status = pg::status(&db.pool, projection.as_ref()).await.unwrap();
        assert_eq!((status.state, status.lag_events), ("live", 0));
    }
    // the catalog's stock agrees with the write side
    let row: (i64, i64) =
        sqlx::query_as("SELECT sum(on_hand)::bigint, sum(available)::bigint FROM rm_catalog.stock")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let (mut on_hand, mut available) = (0, 0);
    for n in 0..8 {
        let stock = stores
            .inventory
            .load(&format!("SKU-7-{n}"))
            .await
            .unwrap()
            .aggregate;
        on_hand += stock.on_hand() as i64;
        available += stock.available() as i64;
    }
    assert_eq!(row, (on_hand, available));
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_dies_before_commit_changes_nothing() {
    let db = TestDatabase::create(eventlog::migrate::MIGRATIONS, 8).await;
    let stores = Stores::new(&db.pool);
    random_workload(&stores, 11, 120).await;
    let projection = pg::orders::Orders;
    settled_head(&db.pool).await;
    pg::ensure_live(&db.pool, &projection).await.unwrap();
    pg::step(&db.pool, &projection, 50).await.unwrap();
    // a projector that applies the next batch and dies before committing
    {
        let mut tx = db.pool.begin().await.unwrap();
        let position = eventlog::checkpoint::load(&mut *tx, "pg:orders")
            .await
            .unwrap();
        let batch = log::read_after(&mut *tx, position, 50).await.unwrap();
        projection
            .apply(&mut tx, "rm_orders", &batch)
            .await
            .unwrap();
        drop(tx); // rolled back
    }
    while pg::step(&db.pool, &projection, 50).await.unwrap() > 0 {}
    let followed = contents(&db.pool, &projection).await;
    pg::rebuild(&db.pool, &projection, 500, |_| {})
        .await
        .unwrap();
    assert_eq!(contents(&db.pool, &projection).await, followed);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_while_writes_continue_loses_nothing_and_swaps_atomically() {
    let db = TestDatabase::create(eventlog::migrate::MIGRATIONS, 12).await;
    let stores = Arc::new(Stores::new(&db.pool));
    random_workload(&stores, 3, 200).await;
    let projection = pg::catalog::Catalog;
    follow_to_head(&db.pool, &projection, 100).await;

    // readers count products all along: never an error, never fewer than before
    let stop = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn({
        let (pool, stop) = (db.pool.clone(), stop.clone());
        async move {
            let mut seen = 0i64;
            let mut reads = 0;
            while !stop.load(Ordering::SeqCst) {
                let count: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_catalog.products")
                    .fetch_one(&pool)
                    .await
                    .expect("the catalog is always there");
                assert!(count >= seen, "products went from {seen} to {count}");
                seen = count;
                reads += 1;
            }
            reads
        }
    });
    let writer = tokio::spawn({
        let stores = stores.clone();
        async move { random_workload(&stores, 4, 150).await }
    });
    pg::rebuild(&db.pool, &projection, 50, |_| {})
        .await
        .unwrap();
    writer.await.unwrap();
    follow_to_head(&db.pool, &projection, 100).await;
    stop.store(true, Ordering::SeqCst);
    assert!(reader.await.unwrap() > 0);

    let after = contents(&db.pool, &projection).await;
    pg::rebuild(&db.pool, &projection, 1_000, |_| {})
        .await
        .unwrap();
    assert_eq!(
        contents(&db.pool, &projection).await,
        after,
        "nothing written during the rebuild was lost"
    );
    let products: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_catalog.products")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(products, 16);
    db.drop().await;
}
