//! `shop bench rebuild`: generates a realistic log (catalog, stock, orders, payments) of N events
//! and rebuilds every PostgreSQL read model from it, reporting events/s for each and for all.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Instant;

use chrono::Utc;
use domain::order::{OrderLine, OrderTotals};
use domain::{
    Address, CartId, Currency, CustomerId, InventoryEvent, Money, OrderEvent, OrderId, OrderNumber,
    PaymentEvent, PaymentId, ProductEvent, Quantity, Sku,
};
use eventlog::store::{append_bulk, NewEvent};
use eventlog::{Actor, EventMetadata};
use projections::pg;
use serde_json::Value;
use uuid::Uuid;

use crate::config::StoreConfig;

/// Buffers generated events and appends them in batches, numbering each stream's sequence.
pub(super) struct Generator {
    pool: sqlx::PgPool,
    metadata: Value,
    sequences: HashMap<(String, String), i64>,
    pub(super) pending: Vec<NewEvent>,
    pub(super) written: u64,
    pub(super) bar: indicatif::ProgressBar,
}

impl Generator {
    /// A generator writing to `pool` with a progress bar over `total` events.
    pub(super) fn new(pool: &sqlx::PgPool, total: u64, what: &str) -> anyhow::Result<Generator> {
        Ok(Generator {
            pool: pool.clone(),
            metadata: serde_json::to_value(EventMetadata::new(Actor::system("bench")).to_map())?,
            sequences: HashMap::new(),
            pending: Vec::new(),
            written: 0,
            bar: super::progress_bar(total, what),
        })
    }

    /// Continues a stream that already has events up to `sequence`.
    pub(super) fn continue_stream(
        &mut self,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: i64,
    ) {
        self.sequences.insert(
            (aggregate_type.to_owned(), aggregate_id.to_owned()),
            sequence,
        );
    }

    pub(super) fn push<E: cqrs_es::DomainEvent>(
        &mut self,
        aggregate_type: &str,
        aggregate_id: &str,
        event: E,
    ) -> anyhow::Result<()> {
        let key = (aggregate_type.to_owned(), aggregate_id.to_owned());
        let sequence = self.sequences.entry(key).or_insert(0);
        *sequence += 1;
        self.pending.push(NewEvent {
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: aggregate_id.to_owned(),
            sequence: *sequence,
            event_type: event.event_type(),
            event_version: event.event_version(),
            payload: serde_json::to_value(&event)?,
            metadata: self.metadata.clone(),
        });
        Ok(())
    }

    /// Writes what is buffered; callers flush between phases so every stream's events in one
    /// batch are consecutive.
    pub(super) async fn flush(&mut self) -> anyhow::Result<()> {
        for chunk in self.pending.chunks(2_000) {
            let mut tx = self.pool.begin().await?;
            append_bulk(&mut tx, chunk).await?;
            tx.commit().await?;
            self.written += chunk.len() as u64;
            self.bar.set_position(self.written);
        }
        self.pending.clear();
        Ok(())
    }
}

pub async fn rebuild(stores: &StoreConfig, events: u64, batch: i64) -> anyhow::Result<ExitCode> {
    let pool = super::connect(stores).await?;
    let eur = Currency::parse("EUR").map_err(|e| anyhow::anyhow!("{e}"))?;
    let one = |n: u32| Quantity::new(n).map_err(|e| anyhow::anyhow!("{e}"));
    // 8 events per order (3 order, 3 payment, 2 stock) plus 2 per product
    let products = (events / 100).max(10);
    let orders = events.saturating_sub(products * 2) / 8;
    let mut generator = Generator::new(&pool, products * 2 + orders * 8, "generating")?;
    let started = Instant::now();
    let skus: Vec<String> = (0..products).map(|n| format!("GEN-{n:07}")).collect();
    for (n, sku) in skus.iter().enumerate() {
        let created = ProductEvent::ProductCreated {
            sku: Sku::parse(sku.clone()).map_err(|e| anyhow::anyhow!("{e}"))?,
            name: format!("Generated product {n}"),
            description:
                "A product of the rebuild benchmark, with a description of ordinary length.".into(),
            category: ["audio", "computers", "home", "toys", "garden"][n % 5].into(),
            price: Money::new(500 + (n as i64 * 37) % 20_000, eur),
            created_at: Utc::now(),
        };
        generator.push("product", sku, created)?;
    }
    generator.flush().await?;
    for sku in &skus {
        let received = InventoryEvent::StockReceived {
            sku: Sku::parse(sku.clone()).map_err(|e| anyhow::anyhow!("{e}"))?,
            quantity: one(1_000_000)?,
        };
        generator.push("inventory", sku, received)?;
    }
    generator.flush().await?;
    generate_orders(&mut generator, &skus, 1, orders).await?;
    generator.bar.finish_and_clear();
    let generated = started.elapsed().as_secs_f64();
    println!(
        "generated {} events ({products} products, {orders} orders) in {generated:.1} s = {:.0} events/s",
        generator.written,
        generator.written as f64 / generated
    );

    // a rebuild meets a log at rest, not one written a moment ago: vacuumed (hint bits and the
    // visibility map set), analyzed, and past a checkpoint — otherwise the first reader pays
    // for all of that and the measurement is of the generator's aftermath
    let settling = Instant::now();
    sqlx::raw_sql("VACUUM ANALYZE events")
        .execute(&pool)
        .await?;
    if let Err(error) = sqlx::raw_sql("CHECKPOINT").execute(&pool).await {
        // needs pg_checkpoint or a superuser: without it the rebuild shares the disk with one
        eprintln!("no checkpoint before the rebuild ({error})");
    }
    println!(
        "settled the log (VACUUM ANALYZE events; CHECKPOINT) in {:.1} s",
        settling.elapsed().as_secs_f64()
    );
    let mut total_events = 0;
    let mut total_seconds = 0.0;
    for projection in pg::all() {
        let bar = super::progress_bar(
            generator.written,
            &format!("rebuilding {}", projection.name()),
        );
        let done = pg::rebuild(&pool, projection.as_ref(), batch, |p| {
            bar.set_position(p.events)
        })
        .await?;
        bar.finish_and_clear();
        println!(
            "rebuild {:<8} {} events in {:.2} s = {:.0} events/s (reading the log {:.2} s, writing the model {:.2} s)",
            projection.name(),
            done.events,
            done.seconds,
            done.events as f64 / done.seconds.max(1e-9),
            done.read_seconds,
            done.write_seconds,
        );
        total_events += done.events;
        total_seconds += done.seconds;
    }
    println!(
        "rebuild all: {total_events} events applied in {total_seconds:.2} s = {:.0} events/s (each projection reads the whole log)",
        total_events as f64 / total_seconds.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

/// Appends `orders` paid orders over `skus` (numbered from `first_number`): 8 events each —
/// placed, stock reserved, confirmed; payment requested, authorized, captured; the reservation
/// and its commit on the SKU's stream.
pub(super) async fn generate_orders(
    generator: &mut Generator,
    skus: &[String],
    first_number: u64,
    orders: u64,
) -> anyhow::Result<()> {
    let eur = Currency::parse("EUR").map_err(|e| anyhow::anyhow!("{e}"))?;
    let one = |n: u32| Quantity::new(n).map_err(|e| anyhow::anyhow!("{e}"));
    let address = Address::new("Bench", "1 Main St", None, "Berlin", "10115", "DE")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut sold: Vec<Vec<OrderId>> = vec![Vec::new(); skus.len()];
    for n in 0..orders {
        let order = OrderId::new(Uuid::new_v4());
        let payment = PaymentId::new(Uuid::new_v4());
        let line = (n as usize * 7919) % skus.len();
        let price = Money::new(1_500, eur);
        let at = Utc::now();
        let placed = OrderEvent::OrderPlaced {
            order_number: OrderNumber(first_number + n),
            customer: Some(CustomerId::new(Uuid::new_v4())),
            cart_id: CartId::new(Uuid::new_v4()),
            lines: vec![OrderLine {
                sku: Sku::parse(skus[line].clone()).map_err(|e| anyhow::anyhow!("{e}"))?,
                name: format!("Generated product {line}"),
                quantity: one(1)?,
                unit_price: price,
            }],
            currency: eur,
            totals: OrderTotals {
                subtotal: price,
                discount: Money::zero(eur),
                tax: Money::new(285, eur),
                shipping: Money::new(499, eur),
                total: Money::new(2_284, eur),
            },
            shipping_address: address.clone(),
            payment_method: "pm_card_visa".into(),
            placed_at: at,
        };
        let id = order.to_string();
        generator.push("order", &id, placed)?;
        generator.push("order", &id, OrderEvent::OrderStockReserved { at })?;
        generator.push(
            "order",
            &id,
            OrderEvent::OrderConfirmed {
                payment_id: payment,
                at,
            },
        )?;
        let pay = payment.to_string();
        let total = Money::new(2_284, eur);
        generator.push(
            "payment",
            &pay,
            PaymentEvent::PaymentRequested {
                order_id: order,
                amount: total,
                method: "pm_card_visa".into(),
                requested_at: at,
            },
        )?;
        generator.push(
            "payment",
            &pay,
            PaymentEvent::PaymentAuthorized {
                provider_ref: format!("pi_{n}"),
                amount: total,
                at,
            },
        )?;
        generator.push(
            "payment",
            &pay,
            PaymentEvent::PaymentCaptured { amount: total, at },
        )?;
        sold[line].push(order);
        if generator.pending.len() >= 10_000 {
            generator.flush().await?;
        }
    }
    generator.flush().await?;
    for (line, orders) in sold.iter().enumerate() {
        for order in orders {
            let reserved = InventoryEvent::StockReserved {
                order_id: *order,
                quantity: one(1)?,
                expires_at: Utc::now(),
            };
            generator.push("inventory", &skus[line], reserved)?;
            let committed = InventoryEvent::ReservationCommitted {
                order_id: *order,
                quantity: one(1)?,
            };
            generator.push("inventory", &skus[line], committed)?;
        }
        if generator.pending.len() >= 10_000 {
            generator.flush().await?;
        }
    }
    generator.flush().await?;
    Ok(())
}
