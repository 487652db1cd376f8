//! The catalog read model: every product with its price, category, stock and images (`rm_catalog`),
//! each product's prices in further currencies (`product_prices`), the options a product's
//! variants choose from (`product_options`) and which product each variant is of
//! (`product_variants`); the category tree with each category's path from its root
//! (`categories`, for breadcrumbs and subtrees) and the featured products (`featured_products`).
//! Applied in batches: the batch's products are read once, folded in memory, and written back
//! with one upsert per table — which is what makes a rebuild fast.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{CatalogEvent, InventoryEvent, ProductEvent};
use eventlog::RecordedEvent;
use schemas::AnyEvent;
use sqlx::{Postgres, Row, Transaction};

use super::{decode, PgProjection, Result};

pub struct Catalog;

#[derive(Clone, Debug)]
struct ProductRow {
    name: String,
    description: String,
    category: String,
    price_minor: i64,
    currency: String,
    discontinued: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// An image a product shows; `ordinal` (the sequence of its `ProductImageAdded` in the
/// product's stream) orders a product's images.
#[derive(Clone, Debug)]
struct ImageRow {
    ordinal: i64,
    content_type: String,
    width: i32,
    height: i32,
    alt: String,
}

#[async_trait]
impl PgProjection for Catalog {
    fn name(&self) -> &'static str {
        "catalog"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["product", "inventory", "catalog"]
    }

    fn tables(&self, s: &str) -> String {
        format!(
            "CREATE TABLE {s}.products (
                sku          text PRIMARY KEY,
                name         text NOT NULL,
                description  text NOT NULL,
                category     text NOT NULL,
                price_minor  bigint NOT NULL,
                currency     text NOT NULL,
                discontinued boolean NOT NULL,
                created_at   timestamptz NOT NULL,
                updated_at   timestamptz NOT NULL);
             CREATE TABLE {s}.product_images (
                sku          text NOT NULL,
                image_id     text NOT NULL,
                ordinal      bigint NOT NULL,
                content_type text NOT NULL,
                width        integer NOT NULL,
                height       integer NOT NULL,
                alt          text NOT NULL,
                PRIMARY KEY (sku, image_id));
             CREATE TABLE {s}.stock (
                sku       text PRIMARY KEY,
                on_hand   bigint NOT NULL,
                available bigint NOT NULL);"
        )
    }

    fn added_tables(&self, s: &str) -> String {
        // fed only by ProductPriceSet/ProductPriceRemoved, ProductOptionsDeclared and
        // ProductVariantOf, and the catalog aggregate's events, introduced with them
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.product_prices (
                sku          text NOT NULL,
                currency     text NOT NULL,
                amount_minor bigint NOT NULL,
                PRIMARY KEY (sku, currency));
             CREATE TABLE IF NOT EXISTS {s}.product_options (
                sku     text PRIMARY KEY,
                options jsonb NOT NULL);
             CREATE TABLE IF NOT EXISTS {s}.product_variants (
                sku           text PRIMARY KEY,
                parent_sku    text NOT NULL,
                option_values jsonb NOT NULL);
             CREATE INDEX IF NOT EXISTS product_variants_parent ON {s}.product_variants (parent_sku);
             CREATE TABLE IF NOT EXISTS {s}.categories (
                slug        text PRIMARY KEY,
                name        text NOT NULL,
                parent_slug text,
                path        text[] NOT NULL);
             CREATE TABLE IF NOT EXISTS {s}.featured_products (
                position integer PRIMARY KEY,
                sku      text NOT NULL);"
        )
    }

    fn indexes(&self, s: &str) -> String {
        format!("CREATE INDEX ON {s}.products (category, price_minor);")
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        s: &str,
        events: &[RecordedEvent],
    ) -> Result<()> {
        let mut touched: Vec<String> = Vec::new();
        let mut decoded = Vec::with_capacity(events.len());
        for event in events {
            match event.aggregate_type.as_str() {
                "product" => {
                    touched.push(event.aggregate_id.clone());
                    decoded.push((event, decode(event)?));
                }
                "inventory" | "catalog" => decoded.push((event, decode(event)?)),
                _ => {}
            }
        }
        let mut products: HashMap<String, ProductRow> = HashMap::new();
        if !touched.is_empty() {
            let rows = sqlx::query(&format!(
                "SELECT sku, name, description, category, price_minor, currency, discontinued, created_at, updated_at
                   FROM {s}.products WHERE sku = ANY($1)"
            ))
            .bind(&touched)
            .fetch_all(&mut **tx)
            .await?;
            for row in rows {
                products.insert(
                    row.get("sku"),
                    ProductRow {
                        name: row.get("name"),
                        description: row.get("description"),
                        category: row.get("category"),
                        price_minor: row.get("price_minor"),
                        currency: row.get("currency"),
                        discontinued: row.get("discontinued"),
                        created_at: row.get("created_at"),
                        updated_at: row.get("updated_at"),
                    },
                );
            }
        }
        let mut changed: BTreeSet<String> = BTreeSet::new();
        let mut stock: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        // (sku, currency) → the last price set in this batch, or None: removed
        let mut prices: BTreeMap<(String, String), Option<i64>> = BTreeMap::new();
        // sku → options (JSON text), and variant sku → (parent, option values as JSON text)
        let mut options: BTreeMap<String, String> = BTreeMap::new();
        let mut variants: BTreeMap<String, (String, String)> = BTreeMap::new();
        let catalog_events: Vec<CatalogEvent> = decoded
            .iter()
            .filter_map(|(_, event)| match event {
                AnyEvent::Catalog(event) => Some(event.clone()),
                _ => None,
            })
            .collect();
        // the batch's last word on each (sku, image id): shown (with its row) or taken down
        let mut images: BTreeMap<(String, String), Option<ImageRow>> = BTreeMap::new();
        for (event, decoded) in decoded {
            let at = event.recorded_at;
            match decoded {
                AnyEvent::Product(product) => {
                    let sku = event.aggregate_id.clone();
                    if let ProductEvent::ProductCreated {
                        name,
                        description,
                        category,
                        price,
                        created_at,
                        ..
                    } = &product
                    {
                        products.insert(
                            sku.clone(),
                            ProductRow {
                                name: name.clone(),
                                description: description.clone(),
                                category: category.clone(),
                                price_minor: price.amount_minor,
                                currency: price.currency.as_str().to_owned(),
                                discontinued: false,
                                created_at: *created_at,
                                updated_at: at,
                            },
                        );
                        changed.insert(sku);
                        continue;
                    }
                    let Some(row) = products.get_mut(&sku) else {
                        continue; // a change to a product this model never saw created
                    };
                    match product {
                        ProductEvent::ProductCreated { .. } => {}
                        ProductEvent::ProductRenamed { name } => row.name = name,
                        ProductEvent::ProductDescribed { description } => {
                            row.description = description
                        }
                        ProductEvent::ProductRepriced { price } => {
                            row.price_minor = price.amount_minor
                        }
                        ProductEvent::ProductCategorised { category } => row.category = category,
                        ProductEvent::ProductDiscontinued { .. } => row.discontinued = true,
                        ProductEvent::ProductPriceSet { price } => {
                            prices.insert(
                                (sku.clone(), price.currency.as_str().to_owned()),
                                Some(price.amount_minor),
                            );
                        }
                        ProductEvent::ProductPriceRemoved { currency } => {
                            prices.insert((sku.clone(), currency.as_str().to_owned()), None);
                        }
                        ProductEvent::ProductOptionsDeclared { options: declared } => {
                            options.insert(sku.clone(), serde_json::json!(declared).to_string());
                        }
                        // the parent's list: the variant's own ProductVariantOf says it exists
                        ProductEvent::ProductVariantAdded { .. } => {}
                        ProductEvent::ProductVariantOf {
                            parent,
                            option_values,
                        } => {
                            variants.insert(
                                sku.clone(),
                                (
                                    parent.to_string(),
                                    serde_json::json!(option_values).to_string(),
                                ),
                            );
                        }
                        ProductEvent::ProductImageAdded { image } => {
                            let shown = ImageRow {
                                ordinal: event.sequence,
                                content_type: image.format.content_type().to_owned(),
                                width: i32::try_from(image.width).unwrap_or(i32::MAX),
                                height: i32::try_from(image.height).unwrap_or(i32::MAX),
                                alt: image.alt,
                            };
                            images.insert((sku.clone(), image.image_id.into()), Some(shown));
                        }
                        ProductEvent::ProductImageRemoved { image_id } => {
                            images.insert((sku.clone(), image_id.into()), None);
                        }
                    }
                    row.updated_at = at;
                    changed.insert(sku);
                }
                AnyEvent::Inventory(inventory) => {
                    let (on_hand, available) = match inventory {
                        InventoryEvent::StockReceived { quantity, .. } => {
                            let q = i64::from(quantity.get());
                            (q, q)
                        }
                        InventoryEvent::StockAdjusted { delta, .. } => (delta, delta),
                        InventoryEvent::StockReserved { quantity, .. } => {
                            (0, -i64::from(quantity.get()))
                        }
                        InventoryEvent::ReservationReleased { quantity, .. } => {
                            (0, i64::from(quantity.get()))
                        }
                        InventoryEvent::ReservationCommitted { quantity, .. } => {
                            (-i64::from(quantity.get()), 0)
                        }
                        InventoryEvent::StockReturned { quantity, .. } => {
                            let q = i64::from(quantity.get());
                            (q, q)
                        }
                        InventoryEvent::ReservationRefused { .. }
                        | InventoryEvent::LowStock { .. }
                        | InventoryEvent::LowStockThresholdSet { .. } => (0, 0),
                    };
                    if on_hand != 0 || available != 0 {
                        let entry = stock.entry(event.aggregate_id.clone()).or_default();
                        entry.0 += on_hand;
                        entry.1 += available;
                    }
                }
                _ => {}
            }
        }
        if !changed.is_empty() {
            let rows: Vec<(&String, &ProductRow)> = changed
                .iter()
                .filter_map(|sku| products.get(sku).map(|row| (sku, row)))
                .collect();
            let column =
                |f: fn(&ProductRow) -> String| rows.iter().map(|(_, r)| f(r)).collect::<Vec<_>>();
            sqlx::query(&format!(
                "INSERT INTO {s}.products (sku, name, description, category, price_minor, currency, discontinued, created_at, updated_at)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::bool[], $8::timestamptz[], $9::timestamptz[])
                 ON CONFLICT (sku) DO UPDATE SET
                    name = EXCLUDED.name, description = EXCLUDED.description, category = EXCLUDED.category,
                    price_minor = EXCLUDED.price_minor, currency = EXCLUDED.currency,
                    discontinued = EXCLUDED.discontinued, updated_at = EXCLUDED.updated_at"
            ))
            .bind(rows.iter().map(|(sku, _)| (*sku).clone()).collect::<Vec<_>>())
            .bind(column(|r| r.name.clone()))
            .bind(column(|r| r.description.clone()))
            .bind(column(|r| r.category.clone()))
            .bind(rows.iter().map(|(_, r)| r.price_minor).collect::<Vec<_>>())
            .bind(column(|r| r.currency.clone()))
            .bind(rows.iter().map(|(_, r)| r.discontinued).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.created_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|(_, r)| r.updated_at).collect::<Vec<_>>())
            .execute(&mut **tx)
            .await?;
        }
        let (set, removed): (Vec<_>, Vec<_>) =
            prices.into_iter().partition(|(_, amount)| amount.is_some());
        if !removed.is_empty() {
            let (skus, currencies): (Vec<String>, Vec<String>) =
                removed.into_iter().map(|(key, _)| key).unzip();
            sqlx::query(&format!(
                "DELETE FROM {s}.product_prices p
                  USING UNNEST($1::text[], $2::text[]) AS gone (sku, currency)
                  WHERE p.sku = gone.sku AND p.currency = gone.currency"
            ))
            .bind(skus)
            .bind(currencies)
            .execute(&mut **tx)
            .await?;
        }
        if !set.is_empty() {
            let mut skus = Vec::with_capacity(set.len());
            let mut currencies = Vec::with_capacity(set.len());
            let mut amounts = Vec::with_capacity(set.len());
            for ((sku, currency), amount) in set {
                skus.push(sku);
                currencies.push(currency);
                amounts.push(amount.unwrap_or_default());
            }
            sqlx::query(&format!(
                "INSERT INTO {s}.product_prices (sku, currency, amount_minor)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[])
                 ON CONFLICT (sku, currency) DO UPDATE SET amount_minor = EXCLUDED.amount_minor"
            ))
            .bind(skus)
            .bind(currencies)
            .bind(amounts)
            .execute(&mut **tx)
            .await?;
        }
        if !catalog_events.is_empty() {
            apply_catalog(tx, s, catalog_events).await?;
        }
        if !options.is_empty() {
            let (skus, declared): (Vec<String>, Vec<String>) = options.into_iter().unzip();
            sqlx::query(&format!(
                "INSERT INTO {s}.product_options (sku, options)
                 SELECT sku, options::jsonb FROM UNNEST($1::text[], $2::text[]) AS o (sku, options)
                 ON CONFLICT (sku) DO UPDATE SET options = EXCLUDED.options"
            ))
            .bind(skus)
            .bind(declared)
            .execute(&mut **tx)
            .await?;
        }
        if !variants.is_empty() {
            let mut skus = Vec::with_capacity(variants.len());
            let mut parents = Vec::with_capacity(variants.len());
            let mut values = Vec::with_capacity(variants.len());
            for (sku, (parent, option_values)) in variants {
                skus.push(sku);
                parents.push(parent);
                values.push(option_values);
            }
            sqlx::query(&format!(
                "INSERT INTO {s}.product_variants (sku, parent_sku, option_values)
                 SELECT sku, parent_sku, option_values::jsonb
                   FROM UNNEST($1::text[], $2::text[], $3::text[]) AS v (sku, parent_sku, option_values)
                 ON CONFLICT (sku) DO UPDATE SET
                    parent_sku = EXCLUDED.parent_sku, option_values = EXCLUDED.option_values"
            ))
            .bind(skus)
            .bind(parents)
            .bind(values)
            .execute(&mut **tx)
            .await?;
        }
        if !images.is_empty() {
            let (skus, ids): (Vec<&String>, Vec<&String>) =
                images.keys().map(|(sku, id)| (sku, id)).unzip();
            sqlx::query(&format!(
                "DELETE FROM {s}.product_images
                  WHERE (sku, image_id) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))"
            ))
            .bind(&skus)
            .bind(&ids)
            .execute(&mut **tx)
            .await?;
            let shown: Vec<(&(String, String), &ImageRow)> = images
                .iter()
                .filter_map(|(key, row)| row.as_ref().map(|row| (key, row)))
                .collect();
            if !shown.is_empty() {
                sqlx::query(&format!(
                    "INSERT INTO {s}.product_images (sku, image_id, ordinal, content_type, width, height, alt)
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::int[], $6::int[], $7::text[])"
                ))
                .bind(shown.iter().map(|((sku, _), _)| sku.clone()).collect::<Vec<_>>())
                .bind(shown.iter().map(|((_, id), _)| id.clone()).collect::<Vec<_>>())
                .bind(shown.iter().map(|(_, r)| r.ordinal).collect::<Vec<_>>())
                .bind(shown.iter().map(|(_, r)| r.content_type.clone()).collect::<Vec<_>>())
                .bind(shown.iter().map(|(_, r)| r.width).collect::<Vec<_>>())
                .bind(shown.iter().map(|(_, r)| r.height).collect::<Vec<_>>())
                .bind(shown.iter().map(|(_, r)| r.alt.clone()).collect::<Vec<_>>())
                .execute(&mut **tx)
                .await?;
            }
        }
        if !stock.is_empty() {
            let skus: Vec<&String> = stock.keys().collect();
            let on_hand: Vec<i64> = stock.values().map(|v| v.0).collect();
            let available: Vec<i64> = stock.values().map(|v| v.1).collect();
            sqlx::query(&format!(
                "INSERT INTO {s}.stock (sku, on_hand, available)
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[])
                 ON CONFLICT (sku) DO UPDATE SET
                    on_hand = stock.on_hand + EXCLUDED.on_hand,
                    available = stock.available + EXCLUDED.available"
            ))
            .bind(skus)
            .bind(on_hand)
            .bind(available)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

/// Applies the catalog stream's events: the whole tree is small, so it is read, changed and
/// written back whole, every path recomputed (a move changes its whole subtree's paths).
async fn apply_catalog(
    tx: &mut Transaction<'_, Postgres>,
    s: &str,
    events: Vec<CatalogEvent>,
) -> Result<()> {
    let rows = sqlx::query(&format!(
        "SELECT slug, name, parent_slug FROM {s}.categories"
    ))
    .fetch_all(&mut **tx)
    .await?;
    let mut tree: BTreeMap<String, (String, Option<String>)> = rows
        .into_iter()
        .map(|row| (row.get("slug"), (row.get("name"), row.get("parent_slug"))))
        .collect();
    let mut tree_changed = false;
    let mut featured = None;
    for event in events {
        match event {
            CatalogEvent::CategoryCreated { slug, name, parent } => {
                tree.insert(slug, (name, parent));
                tree_changed = true;
            }
            CatalogEvent::CategoryRenamed { slug, name } => {
                if let Some(category) = tree.get_mut(&slug) {
                    category.0 = name;
                    tree_changed = true;
                }
            }
            CatalogEvent::CategoryMoved { slug, parent } => {
                if let Some(category) = tree.get_mut(&slug) {
                    category.1 = parent;
                    tree_changed = true;
                }
            }
            CatalogEvent::FeaturedProductsSet { skus } => featured = Some(skus),
        }
    }
    if tree_changed {
        let path_of = |slug: &str| {
            let mut path = Vec::new();
            let mut next = Some(slug.to_owned());
            // bounded: the domain never makes a cycle
            while let Some(slug) = next.take().filter(|_| path.len() <= tree.len()) {
                next = tree.get(&slug).and_then(|(_, parent)| parent.clone());
                path.push(slug);
            }
            path.reverse();
            path.join("/")
        };
        let mut slugs = Vec::with_capacity(tree.len());
        let mut names = Vec::with_capacity(tree.len());
        let mut parents = Vec::with_capacity(tree.len());
        let mut paths = Vec::with_capacity(tree.len());
        for (slug, (name, parent)) in &tree {
            paths.push(path_of(slug));
            slugs.push(slug.clone());
            names.push(name.clone());
            parents.push(parent.clone());
        }
        sqlx::query(&format!("DELETE FROM {s}.categories"))
            .execute(&mut **tx)
            .await?;
        // slugs never hold '/', so a path travels as one text and is split back
        sqlx::query(&format!(
            "INSERT INTO {s}.categories (slug, name, parent_slug, path)
             SELECT slug, name, parent_slug, string_to_array(path, '/')
               FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) AS c (slug, name, parent_slug, path)"
        ))
        .bind(slugs)
        .bind(names)
        .bind(parents)
        .bind(paths)
        .execute(&mut **tx)
        .await?;
    }
    if let Some(skus) = featured {
        sqlx::query(&format!("DELETE FROM {s}.featured_products"))
            .execute(&mut **tx)
            .await?;
        let positions: Vec<i32> = (0..skus.len() as i32).collect();
        let skus: Vec<String> = skus.iter().map(ToString::to_string).collect();
        sqlx::query(&format!(
            "INSERT INTO {s}.featured_products (position, sku)
             SELECT * FROM UNNEST($1::integer[], $2::text[])"
        ))
        .bind(positions)
        .bind(skus)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
