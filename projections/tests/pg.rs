//! The PostgreSQL read models against the real database: a projection followed batch by batch
//! equals a fresh rebuild after a random workload (contents, not counts); a batch that dies
//! before commit changes nothing; a rebuild while writes continue loses nothing and readers never
//! see a half-built version.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::random_workload;
use eventlog::testing::TestDatabase;
use eventlog::{log, LogPosition};
use projections::pg::{self, PgProjection};
use schemas::stores::Stores;
use sqlx::PgPool;

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
    // every product's rating summary agrees with its reviews folded on the write side
    let review_ids: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = 'review'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(review_ids.len() > 5, "the workload wrote reviews");
    let mut expected: BTreeMap<String, (i64, i64, Vec<i64>)> = BTreeMap::new();
    let mut hidden = 0;
    for id in review_ids {
        let review = stores.reviews.load(&id).await.unwrap().aggregate;
        let review = review.written().unwrap();
        let entry = expected
            .entry(review.sku.to_string())
            .or_insert_with(|| (0, 0, vec![0; 5]));
        if review.hidden {
            hidden += 1;
            continue;
        }
        let stars = i64::from(review.rating.stars());
        entry.0 += 1;
        entry.1 += stars;
        entry.2[stars as usize - 1] += 1;
    }
    assert!(hidden > 0, "the workload hid a review");
    let rows: Vec<(String, i64, i64, Vec<i64>)> = sqlx::query_as(
        "SELECT sku, review_count, rating_total,
                ARRAY[stars_1, stars_2, stars_3, stars_4, stars_5]
           FROM rm_reviews.summaries ORDER BY sku",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let projected: BTreeMap<String, (i64, i64, Vec<i64>)> = rows
        .into_iter()
        .map(|(sku, count, total, histogram)| (sku, (count, total, histogram)))
        .collect();
    assert_eq!(projected, expected);
    // and its images too, in the order each product shows them
    let mut shown = Vec::new();
    for n in 0..8 {
        let sku = format!("SKU-7-{n}");
        let product = stores.products.load(&sku).await.unwrap().aggregate;
        for image in &product.details().unwrap().images {
            shown.push((sku.clone(), image.image_id.to_string(), image.alt.clone()));
        }
    }
    let projected: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT sku, image_id, alt FROM rm_catalog.product_images ORDER BY sku, ordinal",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(!projected.is_empty(), "the workload shows images");
    assert_eq!(projected, shown);
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

/// A live catalog from before the price lists, variants and categories (its schema lacks their
/// tables) gets them on start, and then follows to what a rebuild builds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_version_from_before_added_tables_gets_them_and_follows_to_a_rebuild() {
    let db = TestDatabase::create(eventlog::migrate::MIGRATIONS, 8).await;
    let projection = pg::catalog::Catalog;
    pg::ensure_live(&db.pool, &projection).await.unwrap();
    sqlx::raw_sql(
        "DROP TABLE rm_catalog.product_prices, rm_catalog.product_options,
                    rm_catalog.product_variants, rm_catalog.categories,
                    rm_catalog.featured_products",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let stores = Stores::new(&db.pool);
    random_workload(&stores, 5, 80).await;
    follow_to_head(&db.pool, &projection, 13).await;
    let followed = contents(&db.pool, &projection).await;
    for table in [
        "categories",
        "featured_products",
        "product_options",
        "product_variants",
    ] {
        assert!(
            followed
                .iter()
                .any(|t| t.starts_with(&format!("{table}: {{"))),
            "{table} followed: {followed:?}"
        );
    }
    pg::rebuild(&db.pool, &projection, 1_000, |_| {})
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
    // eight products and two variants per workload
    assert_eq!(products, 20);
    db.drop().await;
}
