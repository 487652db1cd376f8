//! `shop bench browse`: the storefront's reads through the GraphQL API at a constant arrival
//! rate — a catalog page (category filter, price sort), a product page (one product with its
//! description and stock) and a text search with facets — over a
//! generated catalog of N products. The query API runs in this process on the given database
//! with an in-memory search index built from the log; the load is open loop (each request is
//! timed from when it was due, so a slow server cannot hide its queueing).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::{Currency, InventoryEvent, Money, ProductEvent, Quantity, Sku};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::bench_rebuild::Generator;
use super::load::Outcome;
use crate::config::StoreConfig;

const ADJECTIVES: &[&str] = &[
    "wireless",
    "studio",
    "compact",
    "portable",
    "classic",
    "premium",
    "ergonomic",
    "vintage",
    "smart",
    "rugged",
    "silent",
    "solar",
    "modular",
    "folding",
    "digital",
    "acoustic",
];
const NOUNS: &[(&str, &str)] = &[
    ("headphones", "audio"),
    ("speaker", "audio"),
    ("microphone", "audio"),
    ("keyboard", "computers"),
    ("monitor", "computers"),
    ("mouse", "computers"),
    ("lamp", "home"),
    ("kettle", "home"),
    ("blanket", "home"),
    ("puzzle", "toys"),
    ("robot", "toys"),
    ("kite", "toys"),
    ("shovel", "garden"),
    ("hose", "garden"),
    ("planter", "garden"),
];

const CATALOG_PAGE: &str = "query($category: String) {
  products(first: 20, filter: {category: $category}, sort: PRICE_ASC) {
    totalCount
    edges { node { sku name price { amountMinor currency } inStock } }
  }
}";

const SEARCH: &str = "query($text: String) {
  products(first: 20, query: $text, filter: {inStock: true}) {
    totalCount
    edges { node { sku name category price { amountMinor currency } } }
    facets {
      categories { category count }
      priceBands { band count }
      inStock outOfStock
    }
  }
}";

const PRODUCT_PAGE: &str = "query($sku: String!) {
  product(sku: $sku) {
    sku name description category price { amountMinor currency } inStock available discontinued
  }
}";

pub async fn browse(
    stores: &StoreConfig,
    products: u64,
    rate: u64,
    seconds: u64,
    max_error_rate: f64,
) -> anyhow::Result<ExitCode> {
    let pool = super::connect(stores).await?;
    let listed = eventlog::streams::count_events(&pool, "product", "").await?;
    if (listed as u64) < products {
        generate_catalog(&pool, products - listed as u64, listed as u64).await?;
    } else {
        println!("catalog has {listed} product events already; not generating");
    }

    // the catalog read model (for fields search hits do not carry) and this process's index
    tokio::time::sleep(Duration::from_millis(200)).await;
    let catalog = projections::pg::by_name("catalog").expect("catalog projection");
    projections::pg::ensure_live(&pool, catalog.as_ref()).await?;
    while projections::pg::step(&pool, catalog.as_ref(), 5_000).await? > 0 {}
    let index = projections::search::SearchIndex::open(None)?;
    let mut feed = projections::search::SearchFeed::new(&index)?;
    let started = Instant::now();
    let indexed = feed.catch_up(&pool, 10_000).await?;
    println!(
        "search index: {} products from {indexed} events in {:.1} s",
        index.product_count(),
        started.elapsed().as_secs_f64()
    );

    let models = query_api::ReadModels {
        pool: pool.clone(),
        redis: None,
        search: index,
        consistency_wait: Duration::from_secs(2),
    };
    let keys = accounts::tokens::TokenKeys::new(
        &accounts::tokens::Secret::random(),
        Duration::from_secs(900),
    );
    let api = query_api::QueryApi::new(models, keys, query_api::QueryConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/graphql", listener.local_addr()?);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, query_api::router(api)).await;
    });

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(256)
        .build()?;
    let mut failed = false;
    let listed = products.max(listed as u64);
    for (name, query) in [
        ("catalog page", CATALOG_PAGE),
        ("product page", PRODUCT_PAGE),
        ("search + facets", SEARCH),
    ] {
        let outcome = open_loop(&client, &url, name, query, rate, seconds, listed).await;
        outcome.print(name, rate);
        failed |= outcome.error_rate() > max_error_rate;
    }
    server.abort();
    Ok(if failed {
        eprintln!("error rate above {:.1}%", max_error_rate * 100.0);
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Appends `count` products (numbered from `first`) and their stock in bulk.
pub(super) async fn generate_catalog(
    pool: &sqlx::PgPool,
    count: u64,
    first: u64,
) -> anyhow::Result<()> {
    let eur = Currency::parse("EUR").map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut generator = Generator::new(pool, count * 2, "generating catalog")?;
    let started = Instant::now();
    for n in first..first + count {
        let sku = format!("CAT-{n:07}");
        let (noun, category) = NOUNS[(n as usize / ADJECTIVES.len()) % NOUNS.len()];
        let adjective = ADJECTIVES[n as usize % ADJECTIVES.len()];
        let name = format!("{adjective} {noun} {}", n % 1_000);
        let created = ProductEvent::ProductCreated {
            sku: Sku::parse(sku.clone()).map_err(|e| anyhow::anyhow!("{e}"))?,
            description: format!("A {adjective} {noun} for everyday use, model {n}."),
            name,
            category: category.to_owned(),
            price: Money::new(299 + (n as i64 * 7_919) % 40_000, eur),
            created_at: Utc::now(),
        };
        generator.push("product", &sku, created)?;
        // one product in ten is out of stock
        if !n.is_multiple_of(10) {
            let received = InventoryEvent::StockReceived {
                sku: Sku::parse(sku.clone()).map_err(|e| anyhow::anyhow!("{e}"))?,
                quantity: Quantity::new(100).map_err(|e| anyhow::anyhow!("{e}"))?,
            };
            generator.push("inventory", &sku, received)?;
        }
        if generator.pending.len() >= 10_000 {
            generator.flush().await?;
        }
    }
    generator.flush().await?;
    generator.bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "generated {count} products ({} events) in {seconds:.1} s = {:.0} events/s",
        generator.written,
        generator.written as f64 / seconds
    );
    Ok(())
}

/// Sends `rate` requests per second for `seconds`, each on its own task at its due time.
async fn open_loop(
    client: &reqwest::Client,
    url: &str,
    name: &str,
    query: &'static str,
    rate: u64,
    seconds: u64,
    products: u64,
) -> Outcome {
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let results = Arc::new(Mutex::new((Vec::with_capacity(total as usize), 0u64)));
    let bar = super::progress_bar(total, name);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..total {
        let due = started + interval * n as u32;
        tokio::time::sleep_until(due.into()).await;
        let variables = variables_for(n, products);
        let (client, url, results, bar) =
            (client.clone(), url.to_owned(), results.clone(), bar.clone());
        tasks.spawn(async move {
            let ok = match client
                .post(&url)
                .json(&json!({"query": query, "variables": variables}))
                .send()
                .await
            {
                Ok(response) if response.status().is_success() => response
                    .json::<Value>()
                    .await
                    .map(|body| body.get("errors").is_none())
                    .unwrap_or(false),
                _ => false,
            };
            let elapsed = due.elapsed().as_secs_f64() * 1_000.0;
            let mut results = results.lock().await;
            if ok {
                results.0.push(elapsed);
            } else {
                results.1 += 1;
            }
            bar.inc(1);
        });
    }
    while tasks.join_next().await.is_some() {}
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let (latencies, errors) = std::mem::take(&mut *results.lock().await);
    Outcome {
        sent: total,
        errors,
        latencies,
        seconds,
    }
}

/// The variables of the `n`th request (each query reads the ones it declares).
fn variables_for(n: u64, products: u64) -> Value {
    let (noun, category) = NOUNS[(n as usize * 7) % NOUNS.len()];
    // every fourth search has a typo (a dropped letter)
    let text = if n.is_multiple_of(4) {
        let mut word = noun.to_owned();
        word.remove(1);
        word
    } else {
        format!("{} {noun}", ADJECTIVES[n as usize % ADJECTIVES.len()])
    };
    // product pages spread over the whole catalog
    let sku = format!("CAT-{:07}", (n * 7_919) % products.max(1));
    json!({"category": category, "text": text, "sku": sku})
}
