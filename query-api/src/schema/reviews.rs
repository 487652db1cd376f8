//! Product reviews and rating summaries, from the reviews read model (`rm_reviews`):
//! `Product.reviews` (a page of reviews; hidden ones only for staff) and
//! `Product.ratingSummary` (average, count and the 1-5 star histogram of the visible reviews).

use std::collections::HashMap;

use async_graphql::{Context, Enum, SimpleObject, ID};
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::common::{offset_after, offset_cursor, page_size, PageInfo};
use crate::consistency::{await_position, ReadModel};
use crate::error::QueryResult;
use crate::viewer::Viewer;
use crate::ReadModels;

/// How a product's reviews are ordered; ties by id so pages are stable.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReviewSort {
    /// Most recently written first.
    #[default]
    Newest,
    /// Most "helpful" votes first.
    MostHelpful,
    HighestRated,
    LowestRated,
}

impl ReviewSort {
    fn order_by(self) -> &'static str {
        match self {
            ReviewSort::Newest => "written_at DESC, review_id",
            ReviewSort::MostHelpful => "helpful DESC, written_at DESC, review_id",
            ReviewSort::HighestRated => "rating DESC, written_at DESC, review_id",
            ReviewSort::LowestRated => "rating ASC, written_at DESC, review_id",
        }
    }
}

/// One customer's review of a product.
#[derive(SimpleObject, Clone, Debug)]
pub struct Review {
    pub id: ID,
    pub sku: String,
    /// 1 to 5 stars.
    pub rating: i32,
    pub title: String,
    pub text: String,
    /// The author has a delivered order with this product.
    pub verified_purchase: bool,
    /// How many other customers found it helpful.
    pub helpful_count: i64,
    /// Hidden by staff (only staff see hidden reviews).
    pub hidden: bool,
    pub written_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct ReviewEdge {
    pub cursor: String,
    pub node: Review,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct ReviewConnection {
    pub edges: Vec<ReviewEdge>,
    pub page_info: PageInfo,
    /// Every review the caller may see, not just this page.
    pub total_count: i64,
}

/// How many visible reviews gave a number of stars.
#[derive(SimpleObject, Clone, Copy, Debug, PartialEq, Eq)]
pub struct StarCount {
    pub stars: i32,
    pub count: i64,
}

/// A product's rating over its visible reviews.
#[derive(SimpleObject, Clone, Debug, PartialEq)]
pub struct RatingSummary {
    /// Mean stars (1 to 5); null without reviews.
    pub average: Option<f64>,
    pub count: i64,
    /// Five entries, 1 star to 5 stars, zeros included.
    pub histogram: Vec<StarCount>,
}

impl RatingSummary {
    fn of(count: i64, total: i64, stars: [i64; 5]) -> RatingSummary {
        RatingSummary {
            average: (count > 0).then(|| total as f64 / count as f64),
            count,
            histogram: (1..=5)
                .zip(stars)
                .map(|(stars, count)| StarCount { stars, count })
                .collect(),
        }
    }

    pub fn empty() -> RatingSummary {
        RatingSummary::of(0, 0, [0; 5])
    }
}

/// The rating summaries of `skus` (products without reviews get an empty one), in one query,
/// after the reviews read model passed the request's position.
pub async fn rating_summaries(
    ctx: &Context<'_>,
    skus: &[String],
) -> QueryResult<HashMap<String, RatingSummary>> {
    await_position(ctx, ReadModel::Reviews, None).await?;
    let models = ctx.data_unchecked::<ReadModels>();
    let rows = sqlx::query(
        "SELECT sku, review_count, rating_total, stars_1, stars_2, stars_3, stars_4, stars_5
           FROM rm_reviews.summaries WHERE sku = ANY($1)",
    )
    .bind(skus)
    .fetch_all(&models.pool)
    .await?;
    let mut found: HashMap<String, RatingSummary> = rows
        .into_iter()
        .map(|row| {
            let stars = [
                row.get("stars_1"),
                row.get("stars_2"),
                row.get("stars_3"),
                row.get("stars_4"),
                row.get("stars_5"),
            ];
            (
                row.get("sku"),
                RatingSummary::of(row.get("review_count"), row.get("rating_total"), stars),
            )
        })
        .collect();
    for sku in skus {
        found
            .entry(sku.clone())
            .or_insert_with(RatingSummary::empty);
    }
    Ok(found)
}

/// A page of `sku`'s reviews: visible ones, and hidden ones too for staff.
pub async fn reviews_of(
    ctx: &Context<'_>,
    sku: &str,
    first: Option<i32>,
    after: Option<String>,
    sort: ReviewSort,
) -> QueryResult<ReviewConnection> {
    let first = page_size(first)?;
    let offset = match after.as_deref() {
        Some(cursor) => offset_after(cursor)?,
        None => 0,
    };
    await_position(ctx, ReadModel::Reviews, None).await?;
    let models = ctx.data_unchecked::<ReadModels>();
    let staff = ctx.data_opt::<Viewer>().is_some_and(Viewer::is_staff);
    let visible = if staff { "" } else { "AND NOT hidden" };
    let rows = sqlx::query(&format!(
        "SELECT review_id, sku, rating, title, text, verified_purchase, helpful, hidden,
                written_at, edited_at, count(*) OVER () AS total
           FROM rm_reviews.reviews
          WHERE sku = $1 {visible}
          ORDER BY {}
          LIMIT $2 OFFSET $3",
        sort.order_by()
    ))
    .bind(sku)
    .bind(first as i64)
    .bind(offset as i64)
    .fetch_all(&models.pool)
    .await?;
    let total: i64 = match rows.first() {
        Some(row) => row.get("total"),
        // an empty page (or one past the end): count on its own
        None => {
            sqlx::query_scalar(&format!(
                "SELECT count(*) FROM rm_reviews.reviews WHERE sku = $1 {visible}"
            ))
            .bind(sku)
            .fetch_one(&models.pool)
            .await?
        }
    };
    let edges: Vec<ReviewEdge> = rows
        .into_iter()
        .enumerate()
        .map(|(i, row)| {
            let id: uuid::Uuid = row.get("review_id");
            let rating: i16 = row.get("rating");
            ReviewEdge {
                cursor: offset_cursor(offset + i),
                node: Review {
                    id: ID(id.to_string()),
                    sku: row.get("sku"),
                    rating: i32::from(rating),
                    title: row.get("title"),
                    text: row.get("text"),
                    verified_purchase: row.get("verified_purchase"),
                    helpful_count: row.get("helpful"),
                    hidden: row.get("hidden"),
                    written_at: row.get("written_at"),
                    edited_at: row.get("edited_at"),
                },
            }
        })
        .collect();
    Ok(ReviewConnection {
        page_info: PageInfo {
            has_next_page: (offset + edges.len()) < total as usize,
            has_previous_page: offset > 0,
            start_cursor: edges.first().map(|e| e.cursor.clone()),
            end_cursor: edges.last().map(|e| e.cursor.clone()),
        },
        edges,
        total_count: total,
    })
}
