//! What staff read: stock with its reservations, every order, sales by day. Other roles get
//! `forbidden`, guests `unauthorized`.

use accounts::Role;
use async_graphql::{Context, Object, SimpleObject};
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::common::Money;
use super::orders::{list_orders, OrderConnection, OrderFilter};
use crate::consistency::{await_position, ReadModel};
use crate::error::{IntoGraphql, QueryError, QueryResult};
use crate::viewer::Viewer;
use crate::ReadModels;

/// Longest range `salesByDay` answers, in days.
pub const MAX_SALES_DAYS: i64 = 366;

#[derive(SimpleObject, Clone, Debug)]
pub struct Reservation {
    pub order_id: Uuid,
    pub quantity: i64,
    pub expires_at: DateTime<Utc>,
}

/// Stock of one SKU.
#[derive(SimpleObject, Clone, Debug)]
pub struct InventoryLevel {
    pub sku: String,
    pub on_hand: i64,
    pub reserved: i64,
    /// On hand minus reserved.
    pub available: i64,
    /// Null when never set (the default applies).
    pub low_stock_threshold: Option<i64>,
    /// Open reservations, soonest to expire first.
    pub reservations: Vec<Reservation>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct ProductSales {
    pub sku: String,
    pub units: i64,
    pub revenue: Money,
}

/// One day's sales in one currency (confirmed orders, by the day they were confirmed).
#[derive(SimpleObject, Clone, Debug)]
pub struct SalesDay {
    pub day: NaiveDate,
    pub units: i64,
    pub revenue: Money,
    /// Best-selling first.
    pub products: Vec<ProductSales>,
}

#[derive(Default)]
pub struct StaffQuery;

#[Object]
impl StaffQuery {
    /// Staff: stock and reservations of a SKU; null if it has none.
    #[graphql(complexity = "1 + child_complexity + crate::consistency::wait_cost(&position)")]
    async fn inventory(
        &self,
        ctx: &Context<'_>,
        sku: String,
        position: Option<String>,
    ) -> async_graphql::Result<Option<InventoryLevel>> {
        async {
            ctx.data_unchecked::<Viewer>()
                .require(Role::Staff, "inventory")?;
            let models = ctx.data_unchecked::<ReadModels>();
            await_position(ctx, ReadModel::Stock, position.as_deref()).await?;
            inventory(models, &sku).await
        }
        .await
        .gql()
    }

    /// Staff: every order, newest first, filtered.
    #[graphql(
        complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity + crate::consistency::wait_cost(&position)"
    )]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        filter: Option<OrderFilter>,
        first: Option<i32>,
        after: Option<String>,
        position: Option<String>,
    ) -> async_graphql::Result<OrderConnection> {
        async {
            ctx.data_unchecked::<Viewer>()
                .require(Role::Staff, "orders")?;
            let models = ctx.data_unchecked::<ReadModels>();
            await_position(ctx, ReadModel::Orders, position.as_deref()).await?;
            list_orders(models, &filter.unwrap_or_default(), first, after.as_deref()).await
        }
        .await
        .gql()
    }

    /// Staff: sales per day from `from` to `to` (inclusive), oldest first; days without sales
    /// are left out.
    async fn sales_by_day(
        &self,
        ctx: &Context<'_>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> async_graphql::Result<Vec<SalesDay>> {
        async {
            ctx.data_unchecked::<Viewer>()
                .require(Role::Staff, "salesByDay")?;
            if to < from {
                return Err(QueryError::validation("`to` is before `from`"));
            }
            if (to - from).num_days() >= MAX_SALES_DAYS {
                return Err(QueryError::validation(format!(
                    "at most {MAX_SALES_DAYS} days at once"
                )));
            }
            sales_by_day(ctx.data_unchecked::<ReadModels>(), from, to).await
        }
        .await
        .gql()
    }
}

async fn inventory(models: &ReadModels, sku: &str) -> QueryResult<Option<InventoryLevel>> {
    let Some(row) = sqlx::query(
        "SELECT on_hand, reserved, low_stock_threshold FROM rm_stock.stock WHERE sku = $1",
    )
    .bind(sku)
    .fetch_optional(&models.pool)
    .await?
    else {
        return Ok(None);
    };
    let reservations = sqlx::query(
        "SELECT order_id, quantity, expires_at FROM rm_stock.reservations
          WHERE sku = $1 ORDER BY expires_at, order_id",
    )
    .bind(sku)
    .fetch_all(&models.pool)
    .await?
    .into_iter()
    .map(|row| Reservation {
        order_id: row.get("order_id"),
        quantity: row.get("quantity"),
        expires_at: row.get("expires_at"),
    })
    .collect();
    let on_hand: i64 = row.get("on_hand");
    let reserved: i64 = row.get("reserved");
    Ok(Some(InventoryLevel {
        sku: sku.to_owned(),
        on_hand,
        reserved,
        available: on_hand - reserved,
        low_stock_threshold: row.get("low_stock_threshold"),
        reservations,
    }))
}

async fn sales_by_day(
    models: &ReadModels,
    from: NaiveDate,
    to: NaiveDate,
) -> QueryResult<Vec<SalesDay>> {
    let rows = sqlx::query(
        "SELECT day, sku, currency, units, revenue FROM rm_orders.sales_daily
          WHERE day BETWEEN $1 AND $2 ORDER BY day, currency, revenue DESC, sku",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&models.pool)
    .await?;
    let mut days: Vec<SalesDay> = Vec::new();
    for row in rows {
        let day: NaiveDate = row.get("day");
        let currency: String = row.get("currency");
        let units: i64 = row.get("units");
        let revenue: i64 = row.get("revenue");
        let same = days
            .last()
            .is_some_and(|last| last.day == day && last.revenue.currency == currency);
        if !same {
            days.push(SalesDay {
                day,
                units: 0,
                revenue: Money::from_row(0, &currency),
                products: Vec::new(),
            });
        }
        let entry = days.last_mut().expect("pushed above");
        entry.units += units;
        entry.revenue.amount_minor += revenue;
        entry.products.push(ProductSales {
            sku: row.get("sku"),
            units,
            revenue: Money::from_row(revenue, &currency),
        });
    }
    Ok(days)
}
