//! The storefront's catalog: `products` (search, facets, sort; from this replica's search index)
//! and `product(sku)` (from the catalog read model in PostgreSQL), with their images (URLs of
//! the objects in the media store, under `QueryConfig::media_base_url`).

use std::collections::HashMap;

use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use projections::search::{SearchRequest, SearchSort};
use sqlx::Row;

use super::common::{offset_after, offset_cursor, page_size, Money, PageInfo};
use super::reviews::{self, RatingSummary, ReviewConnection, ReviewSort};
use crate::consistency::{await_position, ReadModel};
use crate::error::{IntoGraphql, QueryError, QueryResult};
use crate::ReadModels;

/// How `products` are ordered; ties are broken by SKU so pages are stable.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[graphql(remote = "projections::search::SearchSort")]
pub enum ProductSort {
    /// Best text match first; without `query`, SKU order.
    #[default]
    Relevance,
    PriceAsc,
    PriceDesc,
    /// Most recently created first.
    Newest,
    /// Best rated first: the highest average of visible reviews, then the most reviews;
    /// products without reviews last.
    Rating,
}

/// Price bands of the price facet (two-decimal currencies; lower bound inclusive).
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "projections::search::PriceBand")]
pub enum PriceBand {
    Under10,
    From10To25,
    From25To50,
    From50To100,
    From100To250,
    From250,
}

/// Filters of `products`. Prices are in minor units, inclusive.
#[derive(InputObject, Clone, Debug, Default)]
pub struct ProductFilter {
    pub category: Option<String>,
    pub price_min: Option<i64>,
    pub price_max: Option<i64>,
    pub in_stock: Option<bool>,
}

/// A product as the storefront shows it.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub category: String,
    pub price: Money,
    /// At least one unit can be ordered now.
    pub in_stock: bool,
    pub created_at: DateTime<Utc>,
    /// The relevance score, when the list was searched by text and sorted by relevance.
    pub score: Option<f64>,
    #[graphql(skip)]
    pub details: Option<ProductDetails>,
    /// Loaded with the page when a list asks for them (one query, not one per product).
    #[graphql(skip)]
    pub images: Option<Vec<ProductImage>>,
    /// The rating summary, when a list loaded it for the whole page.
    #[graphql(skip)]
    pub rating: Option<RatingSummary>,
}

/// Where the media objects are served: `<base>/<key>` (`/media` on the query API's own
/// listener by default; a CDN or the bucket's URL in a deployment that serves them there).
#[derive(Clone, Debug)]
pub struct MediaUrls {
    pub base: String,
}

impl MediaUrls {
    fn url(&self, key: &str) -> String {
        format!("{}/{key}", self.base.trim_end_matches('/'))
    }
}

/// An image a product shows. Its objects never change (their keys are the image's sha256), so
/// its URLs may be cached for good.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct ProductImage {
    /// The sha256 of the original file.
    pub id: String,
    /// What the image shows, for screen readers; may be empty.
    pub alt: String,
    /// Of the original, in pixels.
    pub width: i32,
    pub height: i32,
    /// `image/png` or `image/jpeg`.
    pub content_type: String,
}

#[ComplexObject]
impl ProductImage {
    /// The original file.
    async fn url(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        let (id, format) = self.key_parts().gql()?;
        Ok(media_urls(ctx).url(&media::original_key(&id, format)))
    }

    /// A copy scaled down (never up) to fit a display `width` pixels wide: the smallest
    /// thumbnail at least that wide (256 or 768), or the widest.
    async fn thumbnail_url(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "the width it is shown at, in pixels (1 to 10000)")] width: i32,
    ) -> async_graphql::Result<String> {
        async {
            let width = u32::try_from(width)
                .ok()
                .filter(|w| (1..=10_000).contains(w))
                .ok_or_else(|| QueryError::validation("width must be 1 to 10000"))?;
            let (id, format) = self.key_parts()?;
            let key = media::thumbnail_key(&id, format, media::thumbnail_width_for(width));
            Ok(media_urls(ctx).url(&key))
        }
        .await
        .gql()
    }
}

impl ProductImage {
    fn key_parts(&self) -> QueryResult<(media::ImageId, media::ImageFormat)> {
        let id = media::ImageId::parse(self.id.clone()).map_err(QueryError::internal)?;
        let format = media::ImageFormat::from_content_type(&self.content_type)
            .ok_or_else(|| QueryError::internal(format!("stored type {}", self.content_type)))?;
        Ok((id, format))
    }
}

fn media_urls(ctx: &Context<'_>) -> MediaUrls {
    ctx.data_opt::<MediaUrls>().cloned().unwrap_or(MediaUrls {
        base: media::http::MEDIA_PREFIX.to_owned(),
    })
}

/// What only the catalog read model holds (search hits do not carry it).
#[derive(Clone, Debug)]
pub struct ProductDetails {
    pub description: String,
    pub discontinued: bool,
    pub available: i64,
}

#[ComplexObject]
impl Product {
    async fn description(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        self.details(ctx).await.map(|d| d.description).gql()
    }

    /// Units that can be ordered now (on hand minus reserved).
    async fn available(&self, ctx: &Context<'_>) -> async_graphql::Result<i64> {
        self.details(ctx).await.map(|d| d.available).gql()
    }

    async fn discontinued(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        self.details(ctx).await.map(|d| d.discontinued).gql()
    }

    /// Its images, in the order they are shown (from the catalog read model).
    async fn images(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ProductImage>> {
        if let Some(images) = &self.images {
            return Ok(images.clone());
        }
        async {
            let models = ctx.data_unchecked::<ReadModels>();
            let mut images = load_images(models, std::slice::from_ref(&self.sku)).await?;
            Ok(images.remove(&self.sku).unwrap_or_default())
        }
        .await
        .gql()
    }

    /// The average, count and 1-5 star histogram of the product's visible reviews.
    async fn rating_summary(&self, ctx: &Context<'_>) -> async_graphql::Result<RatingSummary> {
        async {
            if let Some(rating) = &self.rating {
                return Ok(rating.clone());
            }
            let sku = [self.sku.clone()];
            let mut found = reviews::rating_summaries(ctx, &sku).await?;
            Ok(found.remove(&self.sku).unwrap_or_else(RatingSummary::empty))
        }
        .await
        .gql()
    }

    /// Every price of the product: `price` (the base price) first, then its prices in other
    /// currencies by currency code. A cart is priced in its own currency from this list.
    async fn prices(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Money>> {
        async {
            let models = ctx.data_unchecked::<ReadModels>();
            let mut prices = vec![self.price.clone()];
            prices.extend(other_prices(models, &self.sku).await?);
            Ok(prices)
        }
        .await
        .gql()
    }

    /// The price in `currency` (ISO 4217), or null when the product has none in it.
    async fn price_in(
        &self,
        ctx: &Context<'_>,
        currency: String,
    ) -> async_graphql::Result<Option<Money>> {
        async {
            let currency = domain::Currency::parse(&currency)
                .map_err(|e| QueryError::validation(format!("currency: {e}")))?;
            if currency.as_str() == self.price.currency {
                return Ok(Some(self.price.clone()));
            }
            let models = ctx.data_unchecked::<ReadModels>();
            Ok(other_prices(models, &self.sku)
                .await?
                .into_iter()
                .find(|price| price.currency == currency.as_str()))
        }
        .await
        .gql()
    }

    /// The options its variants choose from, in the order they were declared (empty: a
    /// product without variants).
    async fn options(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ProductOption>> {
        async {
            let models = ctx.data_unchecked::<ReadModels>();
            let options: Option<serde_json::Value> =
                sqlx::query_scalar("SELECT options FROM rm_catalog.product_options WHERE sku = $1")
                    .bind(&self.sku)
                    .fetch_optional(&models.pool)
                    .await?;
            match options {
                None => Ok(Vec::new()),
                Some(options) => serde_json::from_value(options).map_err(QueryError::internal),
            }
        }
        .await
        .gql()
    }

    /// Its variants (each a product with its own SKU, stock and prices), by SKU.
    async fn variants(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Product>> {
        async {
            let models = ctx.data_unchecked::<ReadModels>();
            let skus: Vec<String> = sqlx::query_scalar(
                "SELECT sku FROM rm_catalog.product_variants WHERE parent_sku = $1 ORDER BY sku",
            )
            .bind(&self.sku)
            .fetch_all(&models.pool)
            .await?;
            let mut variants = Vec::with_capacity(skus.len());
            for sku in skus {
                if let Some(product) = load_product(models, &sku).await? {
                    variants.push(product);
                }
            }
            Ok(variants)
        }
        .await
        .gql()
    }

    /// The SKU of the product this one is a variant of; null when it is not a variant.
    async fn variant_of(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        let models = ctx.data_unchecked::<ReadModels>();
        variant_row(models, &self.sku)
            .await
            .map(|row| row.map(|(parent, _)| parent))
            .gql()
    }

    /// A variant's value of every option of its parent, by option name (empty when it is
    /// not a variant).
    async fn option_values(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<OptionValue>> {
        async {
            let models = ctx.data_unchecked::<ReadModels>();
            let Some((_, values)) = variant_row(models, &self.sku).await? else {
                return Ok(Vec::new());
            };
            let values: std::collections::BTreeMap<String, String> =
                serde_json::from_value(values).map_err(QueryError::internal)?;
            Ok(values
                .into_iter()
                .map(|(name, value)| OptionValue { name, value })
                .collect())
        }
        .await
        .gql()
    }

    /// The product's reviews: visible ones (staff see hidden ones too, marked `hidden`).
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn reviews(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        #[graphql(desc = "NEWEST when not given")] sort: Option<ReviewSort>,
    ) -> async_graphql::Result<ReviewConnection> {
        reviews::reviews_of(ctx, &self.sku, first, after, sort.unwrap_or_default())
            .await
            .gql()
    }
}

/// An option a product's variants choose from (`size`: `S`, `M`, `L`).
#[derive(SimpleObject, Clone, Debug, serde::Deserialize)]
pub struct ProductOption {
    pub name: String,
    /// In display order.
    pub values: Vec<String>,
}

/// A variant's value of one option.
#[derive(SimpleObject, Clone, Debug)]
pub struct OptionValue {
    pub name: String,
    pub value: String,
}

/// A product's variant row: its parent and option values.
async fn variant_row(
    models: &ReadModels,
    sku: &str,
) -> QueryResult<Option<(String, serde_json::Value)>> {
    let row = sqlx::query(
        "SELECT parent_sku, option_values FROM rm_catalog.product_variants WHERE sku = $1",
    )
    .bind(sku)
    .fetch_optional(&models.pool)
    .await?;
    Ok(row.map(|row| (row.get("parent_sku"), row.get("option_values"))))
}

/// A product's prices in currencies other than its base price's, by currency code.
async fn other_prices(models: &ReadModels, sku: &str) -> QueryResult<Vec<Money>> {
    let rows = sqlx::query(
        "SELECT currency, amount_minor FROM rm_catalog.product_prices
          WHERE sku = $1 ORDER BY currency",
    )
    .bind(sku)
    .fetch_all(&models.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let currency: String = row.get("currency");
            Money::from_row(row.get("amount_minor"), &currency)
        })
        .collect())
}

impl Product {
    async fn details(&self, ctx: &Context<'_>) -> QueryResult<ProductDetails> {
        if let Some(details) = &self.details {
            return Ok(details.clone());
        }
        let models = ctx.data_unchecked::<ReadModels>();
        load_product(models, &self.sku)
            .await?
            .and_then(|product| product.details)
            .ok_or_else(|| QueryError::NotFound(format!("product {} is not listed", self.sku)))
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct ProductEdge {
    pub cursor: String,
    pub node: Product,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct CategoryCount {
    pub category: String,
    pub count: i64,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct PriceBandCount {
    pub band: PriceBand,
    /// Inclusive lower bound in minor units; null for the lowest band.
    pub min_minor: Option<i64>,
    /// Exclusive upper bound in minor units; null for the highest band.
    pub max_minor: Option<i64>,
    pub count: i64,
}

/// Counts over every product matching the query and filters (not just this page).
#[derive(SimpleObject, Clone, Debug)]
pub struct ProductFacets {
    /// Most matches first, then by name.
    pub categories: Vec<CategoryCount>,
    /// Every band, cheapest first, zeros included.
    pub price_bands: Vec<PriceBandCount>,
    pub in_stock: i64,
    pub out_of_stock: i64,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct ProductConnection {
    pub edges: Vec<ProductEdge>,
    pub page_info: PageInfo,
    /// Every match, not just this page.
    pub total_count: i64,
    pub facets: ProductFacets,
}

/// A product among the most wanted, from the storefront's Redis documents.
#[derive(SimpleObject, Clone, Debug)]
pub struct PopularProduct {
    pub sku: String,
    pub name: String,
    pub category: String,
    pub price: Money,
    pub discontinued: bool,
    /// Units added to carts plus units ordered, over the whole history.
    pub demand: i64,
}

#[derive(Default)]
pub struct CatalogQuery;

#[Object]
impl CatalogQuery {
    /// Search and browse the catalog: free text with typo tolerance over name, description and
    /// category, filters, facets and sorting. Discontinued products are not listed.
    #[graphql(
        complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity + crate::consistency::wait_cost(&position)"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        query: Option<String>,
        filter: Option<ProductFilter>,
        #[graphql(desc = "RELEVANCE when not given")] sort: Option<ProductSort>,
        #[graphql(desc = "a position a command returned: answer once the index has passed it")]
        position: Option<String>,
    ) -> async_graphql::Result<ProductConnection> {
        let sort = sort.unwrap_or_default();
        search_products(ctx, first, after, query, filter, sort, position.as_deref())
            .await
            .gql()
    }

    /// The most wanted products (units added to carts and ordered), most wanted first: the
    /// hot product documents the projector keeps in Redis. At most 100.
    async fn popular_products(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "10 when not given")] first: Option<i32>,
    ) -> async_graphql::Result<Vec<PopularProduct>> {
        async {
            let models = ctx.data_unchecked::<ReadModels>();
            let first = page_size(Some(first.unwrap_or(10)))?;
            let redis = models
                .redis
                .as_ref()
                .ok_or(QueryError::Unavailable("the popular products list"))?;
            let popular = redis.popular_products(first).await.map_err(|error| {
                tracing::warn!(%error, "Redis unavailable for popular products");
                QueryError::Unavailable("the popular products list")
            })?;
            Ok(popular
                .into_iter()
                .map(|(sku, demand, view)| PopularProduct {
                    sku,
                    name: view["name"].as_str().unwrap_or_default().to_owned(),
                    category: view["category"].as_str().unwrap_or_default().to_owned(),
                    price: Money {
                        amount_minor: view["price"]["amount_minor"].as_i64().unwrap_or_default(),
                        currency: view["price"]["currency"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    },
                    discontinued: view["discontinued"].as_bool().unwrap_or_default(),
                    demand: demand as i64,
                })
                .collect())
        }
        .await
        .gql()
    }

    /// One product by SKU, discontinued or not; null if there is none.
    #[graphql(complexity = "1 + child_complexity + crate::consistency::wait_cost(&position)")]
    async fn product(
        &self,
        ctx: &Context<'_>,
        sku: String,
        position: Option<String>,
    ) -> async_graphql::Result<Option<Product>> {
        async {
            let models = ctx.data_unchecked::<ReadModels>();
            await_position(ctx, ReadModel::Catalog, position.as_deref()).await?;
            load_product(models, &sku).await
        }
        .await
        .gql()
    }
}

async fn search_products(
    ctx: &Context<'_>,
    first: Option<i32>,
    after: Option<String>,
    query: Option<String>,
    filter: Option<ProductFilter>,
    sort: ProductSort,
    position: Option<&str>,
) -> QueryResult<ProductConnection> {
    let models = ctx.data_unchecked::<ReadModels>();
    let first = page_size(first)?;
    let offset = match after.as_deref() {
        Some(cursor) => offset_after(cursor)?,
        None => 0,
    };
    let filter = filter.unwrap_or_default();
    let request = SearchRequest {
        text: query,
        category: filter.category,
        price_min: filter.price_min,
        price_max: filter.price_max,
        in_stock: filter.in_stock,
        sort: SearchSort::from(sort),
        offset,
        // a page of 0 still answers the total and the facets
        limit: first.max(1),
    };
    request
        .validate()
        .map_err(|e| QueryError::validation(e.to_string()))?;
    await_position(ctx, ReadModel::Search, position).await?;
    let index = models.search.clone();
    let page = tokio::task::spawn_blocking(move || index.search(&request))
        .await
        .map_err(QueryError::internal)?
        .map_err(|e| {
            if e.is_invalid_request() {
                QueryError::validation(e.to_string())
            } else {
                QueryError::internal(e)
            }
        })?;
    // fields only the catalog read model holds: one query for the whole page, not one per hit
    let node = ctx.look_ahead().field("edges").field("node");
    let wants_details = ["description", "available", "discontinued"]
        .iter()
        .any(|field| node.field(field).exists());
    let skus: Vec<String> = page
        .hits
        .iter()
        .take(first)
        .map(|h| h.sku.clone())
        .collect();
    let mut details = if wants_details {
        load_details(models, &skus).await?
    } else {
        HashMap::new()
    };
    let mut images = if node.field("images").exists() {
        Some(load_images(models, &skus).await?)
    } else {
        None
    };
    let mut ratings = if node.field("ratingSummary").exists() {
        reviews::rating_summaries(ctx, &skus).await?
    } else {
        HashMap::new()
    };
    let edges: Vec<ProductEdge> = page
        .hits
        .into_iter()
        .take(first)
        .enumerate()
        .map(|(i, hit)| ProductEdge {
            cursor: offset_cursor(offset + i),
            node: Product {
                name: hit.name,
                category: hit.category,
                price: Money::from_row(hit.price_minor, &hit.currency),
                in_stock: hit.in_stock,
                created_at: hit.created_at,
                score: (hit.score > 0.0).then_some(f64::from(hit.score)),
                details: details.remove(hit.sku.as_str()),
                images: images
                    .as_mut()
                    .map(|images| images.remove(hit.sku.as_str()).unwrap_or_default()),
                rating: ratings.remove(hit.sku.as_str()),
                sku: hit.sku,
            },
        })
        .collect();
    let page_info = PageInfo {
        has_next_page: offset + edges.len() < page.total,
        has_previous_page: offset > 0,
        start_cursor: edges.first().map(|e| e.cursor.clone()),
        end_cursor: edges.last().map(|e| e.cursor.clone()),
    };
    let facets = page.facets;
    Ok(ProductConnection {
        edges,
        page_info,
        total_count: page.total as i64,
        facets: ProductFacets {
            categories: facets
                .categories
                .into_iter()
                .map(|(category, count)| CategoryCount {
                    category,
                    count: count as i64,
                })
                .collect(),
            price_bands: facets
                .price_bands
                .into_iter()
                .map(|(band, count)| {
                    let (min_minor, max_minor) = band.bounds_minor();
                    PriceBandCount {
                        band: PriceBand::from(band),
                        min_minor,
                        max_minor,
                        count: count as i64,
                    }
                })
                .collect(),
            in_stock: facets.in_stock as i64,
            out_of_stock: facets.out_of_stock as i64,
        },
    })
}

/// The catalog read model's details of `skus`, in one query.
async fn load_details(
    models: &ReadModels,
    skus: &[String],
) -> QueryResult<HashMap<String, ProductDetails>> {
    let rows = sqlx::query(
        "SELECT p.sku, p.description, p.discontinued, COALESCE(s.available, 0) AS available
           FROM rm_catalog.products p LEFT JOIN rm_catalog.stock s USING (sku)
          WHERE p.sku = ANY($1)",
    )
    .bind(skus)
    .fetch_all(&models.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                row.get("sku"),
                ProductDetails {
                    description: row.get("description"),
                    discontinued: row.get("discontinued"),
                    available: row.get("available"),
                },
            )
        })
        .collect())
}

/// The columns [`product_of_row`] reads.
const PRODUCT_COLUMNS: &str = "p.sku, p.name, p.description, p.category, p.price_minor, p.currency,
     p.discontinued, p.created_at, COALESCE(s.available, 0) AS available";

fn product_of_row(row: &sqlx::postgres::PgRow) -> Product {
    let available: i64 = row.get("available");
    let currency: String = row.get("currency");
    Product {
        sku: row.get("sku"),
        name: row.get("name"),
        category: row.get("category"),
        price: Money::from_row(row.get("price_minor"), &currency),
        in_stock: available > 0,
        created_at: row.get("created_at"),
        score: None,
        images: None,
        details: Some(ProductDetails {
            description: row.get("description"),
            discontinued: row.get("discontinued"),
            available,
        }),
        rating: None,
    }
}

/// The images of `skus` from the catalog read model, in one query; each product's in the order
/// they are shown.
async fn load_images(
    models: &ReadModels,
    skus: &[String],
) -> QueryResult<HashMap<String, Vec<ProductImage>>> {
    let rows = sqlx::query(
        "SELECT sku, image_id, content_type, width, height, alt
           FROM rm_catalog.product_images
          WHERE sku = ANY($1)
          ORDER BY sku, ordinal",
    )
    .bind(skus)
    .fetch_all(&models.pool)
    .await?;
    let mut images: HashMap<String, Vec<ProductImage>> = HashMap::new();
    for row in rows {
        images
            .entry(row.get("sku"))
            .or_default()
            .push(ProductImage {
                id: row.get("image_id"),
                alt: row.get("alt"),
                width: row.get("width"),
                height: row.get("height"),
                content_type: row.get("content_type"),
            });
    }
    Ok(images)
}

/// A product from the catalog read model.
pub async fn load_product(models: &ReadModels, sku: &str) -> QueryResult<Option<Product>> {
    let row = sqlx::query(&format!(
        "SELECT {PRODUCT_COLUMNS}
           FROM rm_catalog.products p LEFT JOIN rm_catalog.stock s USING (sku)
          WHERE p.sku = $1"
    ))
    .bind(sku)
    .fetch_optional(&models.pool)
    .await?;
    Ok(row.as_ref().map(product_of_row))
}

/// A category of the tree, with its place in it.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct Category {
    /// What a product's `category` says to be in it.
    pub slug: String,
    pub name: String,
    /// Null for a root.
    pub parent_slug: Option<String>,
    /// 0 for a root.
    pub depth: i32,
    #[graphql(skip)]
    pub path: Vec<String>,
}

#[ComplexObject]
impl Category {
    /// The categories from the root down to this one (itself last).
    async fn breadcrumbs(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Category>> {
        async {
            let models = ctx.data_unchecked::<ReadModels>();
            let mut found = load_categories(models, Categories::Slugs(&self.path)).await?;
            found.sort_by_key(|category| category.depth);
            Ok(found)
        }
        .await
        .gql()
    }

    /// The categories right under this one, by name.
    async fn children(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Category>> {
        async {
            let models = ctx.data_unchecked::<ReadModels>();
            let mut found = load_categories(models, Categories::ChildrenOf(&self.slug)).await?;
            found.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.slug.cmp(&b.slug)));
            Ok(found)
        }
        .await
        .gql()
    }

    /// The products listed in this category (not discontinued), by SKU; with
    /// `includeSubcategories`, those of every category under it too.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn products(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] include_subcategories: bool,
        #[graphql(desc = "20 when not given")] first: Option<i32>,
    ) -> async_graphql::Result<Vec<Product>> {
        async {
            let models = ctx.data_unchecked::<ReadModels>();
            let first = page_size(first)?;
            let slugs: Vec<String> = if include_subcategories {
                sqlx::query_scalar("SELECT slug FROM rm_catalog.categories WHERE $1 = ANY(path)")
                    .bind(&self.slug)
                    .fetch_all(&models.pool)
                    .await?
            } else {
                vec![self.slug.clone()]
            };
            let rows = sqlx::query(&format!(
                "SELECT {PRODUCT_COLUMNS}
                   FROM rm_catalog.products p LEFT JOIN rm_catalog.stock s USING (sku)
                  WHERE p.category = ANY($1) AND NOT p.discontinued
                  ORDER BY p.sku LIMIT $2"
            ))
            .bind(&slugs)
            .bind(first as i64)
            .fetch_all(&models.pool)
            .await?;
            Ok(rows.iter().map(product_of_row).collect())
        }
        .await
        .gql()
    }
}

/// Which categories [`load_categories`] reads.
enum Categories<'a> {
    All,
    Slugs(&'a [String]),
    ChildrenOf(&'a str),
}

/// Categories in tree order (by path).
async fn load_categories(models: &ReadModels, which: Categories<'_>) -> QueryResult<Vec<Category>> {
    let query = match which {
        Categories::All => sqlx::query(
            "SELECT slug, name, parent_slug, path FROM rm_catalog.categories
              ORDER BY array_to_string(path, '/')",
        ),
        Categories::Slugs(slugs) => sqlx::query(
            "SELECT slug, name, parent_slug, path FROM rm_catalog.categories
              WHERE slug = ANY($1) ORDER BY array_to_string(path, '/')",
        )
        .bind(slugs.to_vec()),
        Categories::ChildrenOf(parent) => sqlx::query(
            "SELECT slug, name, parent_slug, path FROM rm_catalog.categories
              WHERE parent_slug = $1 ORDER BY array_to_string(path, '/')",
        )
        .bind(parent.to_owned()),
    };
    let rows = query.fetch_all(&models.pool).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let path: Vec<String> = row.get("path");
            Category {
                slug: row.get("slug"),
                name: row.get("name"),
                parent_slug: row.get("parent_slug"),
                depth: path.len().saturating_sub(1) as i32,
                path,
            }
        })
        .collect())
}

/// The category tree and the featured products (from the catalog read model).
#[derive(Default)]
pub struct CategoryQuery;

#[Object]
impl CategoryQuery {
    /// Every category, in tree order (each right before the categories under it).
    #[graphql(complexity = "100 * child_complexity + crate::consistency::wait_cost(&position)")]
    async fn categories(
        &self,
        ctx: &Context<'_>,
        position: Option<String>,
    ) -> async_graphql::Result<Vec<Category>> {
        async {
            let models = ctx.data_unchecked::<ReadModels>();
            await_position(ctx, ReadModel::Catalog, position.as_deref()).await?;
            load_categories(models, Categories::All).await
        }
        .await
        .gql()
    }

    /// One category by slug; null if there is none.
    #[graphql(complexity = "1 + child_complexity + crate::consistency::wait_cost(&position)")]
    async fn category(
        &self,
        ctx: &Context<'_>,
        slug: String,
        position: Option<String>,
    ) -> async_graphql::Result<Option<Category>> {
        async {
            let models = ctx.data_unchecked::<ReadModels>();
            await_position(ctx, ReadModel::Catalog, position.as_deref()).await?;
            Ok(load_categories(models, Categories::Slugs(&[slug]))
                .await?
                .into_iter()
                .next())
        }
        .await
        .gql()
    }

    /// The featured products, in the order staff set (discontinued ones left out).
    #[graphql(complexity = "50 * child_complexity + crate::consistency::wait_cost(&position)")]
    async fn featured_products(
        &self,
        ctx: &Context<'_>,
        position: Option<String>,
    ) -> async_graphql::Result<Vec<Product>> {
        async {
            let models = ctx.data_unchecked::<ReadModels>();
            await_position(ctx, ReadModel::Catalog, position.as_deref()).await?;
            let rows = sqlx::query(&format!(
                "SELECT {PRODUCT_COLUMNS}
                   FROM rm_catalog.featured_products f
                   JOIN rm_catalog.products p ON p.sku = f.sku
                   LEFT JOIN rm_catalog.stock s ON s.sku = f.sku
                  WHERE NOT p.discontinued
                  ORDER BY f.position"
            ))
            .fetch_all(&models.pool)
            .await?;
            Ok(rows.iter().map(product_of_row).collect::<Vec<_>>())
        }
        .await
        .gql()
    }
}
