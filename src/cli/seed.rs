//! `shop seed`: a demo catalog with stock, written through the domain like any staff command.
//! Safe to run twice: a product that exists is left alone, and its stock is not received again.

use std::process::ExitCode;

use anyhow::{anyhow, Context};
use domain::inventory::{Inventory, InventoryCommand};
use domain::product::{Product, ProductCommand, ProductError};
use domain::{Currency, Money, Quantity, Sku};
use eventlog::store::ExecuteError;
use eventlog::{Actor, EventMetadata};

use crate::config::StoreConfig;

/// (sku, name, category, price in cents, units in stock, description)
const DEMO_CATALOG: &[(&str, &str, &str, i64, u32, &str)] = &[
    (
        "HP-100",
        "Studio headphones",
        "audio",
        12_900,
        40,
        "Closed-back over-ear headphones with a detachable cable.",
    ),
    (
        "HP-200",
        "Wireless headphones",
        "audio",
        19_900,
        25,
        "Noise-cancelling wireless headphones, 30 hours of battery.",
    ),
    (
        "SPK-10",
        "Bookshelf speakers",
        "audio",
        24_900,
        12,
        "A pair of passive two-way bookshelf speakers.",
    ),
    (
        "MIC-05",
        "USB microphone",
        "audio",
        8_900,
        30,
        "Cardioid condenser microphone for podcasts and calls.",
    ),
    (
        "KB-60",
        "Mechanical keyboard",
        "computers",
        11_900,
        35,
        "Compact 60% keyboard with hot-swappable switches.",
    ),
    (
        "MS-01",
        "Ergonomic mouse",
        "computers",
        5_900,
        60,
        "Vertical wireless mouse that is kind to wrists.",
    ),
    (
        "MON-27",
        "27-inch monitor",
        "computers",
        32_900,
        8,
        "QHD IPS monitor with a height-adjustable stand.",
    ),
    (
        "CAB-USB",
        "USB-C cable",
        "accessories",
        1_500,
        200,
        "Braided USB-C to USB-C cable, two metres, 100 W.",
    ),
    (
        "BAG-15",
        "Laptop sleeve",
        "accessories",
        2_900,
        50,
        "Padded felt sleeve for 15-inch laptops.",
    ),
    (
        "LMP-01",
        "Desk lamp",
        "home",
        4_900,
        20,
        "Dimmable LED desk lamp with a warm-white setting.",
    ),
    (
        "MUG-01",
        "Coffee mug",
        "home",
        1_200,
        3,
        "Stoneware mug, 350 ml; only a few left.",
    ),
    (
        "PLT-02",
        "Desk plant",
        "home",
        1_900,
        0,
        "A small pothos in a ceramic pot; awaiting restock.",
    ),
];

pub async fn run(stores: &StoreConfig) -> anyhow::Result<ExitCode> {
    let pool = super::connect(stores).await?;
    let products = schemas::stores::event_store::<Product>(&pool);
    let inventory = schemas::stores::event_store::<Inventory>(&pool);
    let metadata = EventMetadata::new(Actor::system("seed"));
    let eur = Currency::parse("EUR").map_err(|e| anyhow!("{e}"))?;
    let (mut created, mut existing) = (0, 0);
    for (sku, name, category, cents, units, description) in DEMO_CATALOG {
        let sku = Sku::parse(*sku).map_err(|e| anyhow!("demo sku {sku}: {e}"))?;
        let command = ProductCommand::Create {
            sku: sku.clone(),
            name: (*name).to_owned(),
            description: (*description).to_owned(),
            category: (*category).to_owned(),
            price: Money::new(*cents, eur),
            created_at: chrono::Utc::now(),
        };
        match products.execute(sku.as_str(), command, &metadata).await {
            Ok(_) => created += 1,
            Err(ExecuteError::Domain(ProductError::AlreadyExists)) => {
                existing += 1;
                continue;
            }
            Err(error) => return Err(error).with_context(|| format!("creating {sku}")),
        }
        if *units > 0 {
            let quantity = Quantity::new(*units).map_err(|e| anyhow!("{e}"))?;
            inventory
                .execute(
                    sku.as_str(),
                    InventoryCommand::ReceiveStock {
                        sku: sku.clone(),
                        quantity,
                    },
                    &metadata,
                )
                .await
                .with_context(|| format!("receiving stock of {sku}"))?;
        }
    }
    println!("demo catalog: {created} products created, {existing} already there");
    seed_coupons(&pool).await?;
    seed_accounts(&pool).await?;
    Ok(ExitCode::SUCCESS)
}

/// The demo seed, then `products` generated products and `orders` generated orders over them,
/// appended in bulk with a progress bar and a throughput line.
pub async fn run_with_volume(
    stores: &StoreConfig,
    products: u64,
    orders: u64,
) -> anyhow::Result<ExitCode> {
    let code = run(stores).await?;
    if products == 0 && orders == 0 {
        return Ok(code);
    }
    anyhow::ensure!(
        products > 0 || orders == 0,
        "--orders needs --products (orders are generated over the generated products)"
    );
    let pool = super::connect(stores).await?;
    let existing = eventlog::streams::count_events(&pool, "product", "CAT-").await?;
    super::bench_browse::generate_catalog(&pool, products, existing as u64).await?;
    if orders > 0 {
        let skus: Vec<String> = (existing as u64..existing as u64 + products)
            .map(|n| format!("CAT-{n:07}"))
            .collect();
        let started = std::time::Instant::now();
        let mut generator = super::bench_rebuild::Generator::new(
            &pool,
            skus.len() as u64 + orders * 8,
            "generating orders",
        )?;
        let stock_streams = eventlog::streams::last_sequences(&pool, "inventory", &skus).await?;
        for (sku, sequence) in stock_streams {
            generator.continue_stream("inventory", &sku, sequence);
        }
        // stock for every order (one unit each, spread over the SKUs)
        let per_sku = u32::try_from(orders / products + 1).unwrap_or(u32::MAX);
        for sku in &skus {
            generator.push(
                "inventory",
                sku,
                domain::InventoryEvent::StockReceived {
                    sku: Sku::parse(sku.clone()).map_err(|e| anyhow!("{e}"))?,
                    quantity: Quantity::new(per_sku).map_err(|e| anyhow!("{e}"))?,
                },
            )?;
        }
        generator.flush().await?;
        // far above the numbers checkouts assign (generated orders do not take theirs)
        let first_number = 900_000_000 + eventlog::streams::count_streams(&pool, "order").await?;
        super::bench_rebuild::generate_orders(
            &mut generator,
            &skus,
            first_number as u64 + 1,
            orders,
        )
        .await?;
        generator.bar.finish_and_clear();
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "generated {orders} orders ({} events) in {seconds:.1} s = {:.0} events/s",
            generator.written,
            generator.written as f64 / seconds
        );
    }
    Ok(code)
}

async fn seed_coupons(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO coupons (code, percent_off, amount_off, currency) VALUES
            ('WELCOME10', 10, NULL, NULL), ('FIVEOFF', NULL, 500, 'EUR')
         ON CONFLICT (code) DO NOTHING",
    )
    .execute(pool)
    .await?;
    println!("coupons: WELCOME10 (10% off), FIVEOFF (5.00 EUR off)");
    Ok(())
}

/// A staff and an auditor account with random passwords, printed once. Existing ones are left.
async fn seed_accounts(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    use accounts::Role;
    for (email, name, role) in [
        ("staff@shop.local", "Demo staff", Role::Staff),
        ("auditor@shop.local", "Demo auditor", Role::Auditor),
    ] {
        if accounts::find_by_email(pool, email).await?.is_some() {
            println!("account {email} already there");
            continue;
        }
        let password = accounts::tokens::new_refresh_token()[..20].to_owned();
        super::user::add(pool, email, name, role, password.clone()).await?;
        println!(
            "account {email} ({}) created; password: {password}",
            role.as_str()
        );
    }
    Ok(())
}
