//! Orders from the orders read model (`rm_orders`): `order(id)`, `me { orders }` and the staff's
//! `orders(filter)`, with lines, totals, status, timeline and payments.

use accounts::Role;
use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

use super::common::{decode_cursor, encode_cursor, page_size, Money, PageInfo};
use crate::consistency::{await_position, ReadModel};
use crate::error::{IntoGraphql, QueryError, QueryResult};
use crate::viewer::Viewer;
use crate::ReadModels;
use projections::pg::orders::PaymentRowStatus;

/// Where an order is in its lifecycle.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::order::OrderStatus")]
pub enum OrderStatus {
    AwaitingStock,
    AwaitingPayment,
    Confirmed,
    Shipped,
    Delivered,
    Cancelled,
    Failed,
    Refunded,
}

impl OrderStatus {
    /// The status of the read model's text form ([`domain::order::OrderStatus::as_str`]).
    pub fn parse(text: &str) -> QueryResult<OrderStatus> {
        domain::order::OrderStatus::parse(text)
            .map(OrderStatus::from)
            .ok_or_else(|| QueryError::internal(format!("unknown order status `{text}`")))
    }

    pub fn as_text(self) -> &'static str {
        domain::order::OrderStatus::from(self).as_str()
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct OrderTotals {
    pub subtotal: Money,
    pub discount: Money,
    pub tax: Money,
    pub shipping: Money,
    pub total: Money,
    /// Refunded so far.
    pub refunded: Money,
}

#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct Order {
    pub id: Uuid,
    /// The gapless, human-facing order number.
    pub number: i64,
    /// Null for a guest's order.
    pub customer_id: Option<Uuid>,
    pub status: OrderStatus,
    pub totals: OrderTotals,
    /// Why the order failed, in words a customer can read.
    pub failure: Option<String>,
    pub tracking: Option<String>,
    pub placed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct OrderLine {
    pub line: i32,
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price: Money,
    pub line_total: Money,
}

/// One step of an order's history.
#[derive(SimpleObject, Clone, Debug)]
pub struct TimelineEntry {
    /// The event type, e.g. `OrderConfirmed`.
    pub event: String,
    /// The status after the event.
    pub status: OrderStatus,
    pub detail: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct OrderPayment {
    pub id: Uuid,
    /// `requested`, `authorized`, `captured`, `partially_refunded`, `refunded`, `failed`,
    /// `cancelled` or `expired` (the text forms of `projections::pg::orders::PaymentRowStatus`;
    /// a test checks this list).
    pub status: String,
    pub amount: Money,
    pub captured: Money,
    pub refunded: Money,
    pub updated_at: DateTime<Utc>,
}

#[ComplexObject]
impl Order {
    async fn lines(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<OrderLine>> {
        let currency = self.totals.total.currency.clone();
        async {
            let models = ctx.data_unchecked::<ReadModels>();
            let rows = sqlx::query(
                "SELECT line, sku, name, quantity, unit_price FROM rm_orders.order_lines
                  WHERE order_id = $1 ORDER BY line",
            )
            .bind(self.id)
            .fetch_all(&models.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|row| {
                    let quantity: i64 = row.get("quantity");
                    let unit_price: i64 = row.get("unit_price");
                    OrderLine {
                        line: row.get("line"),
                        sku: row.get("sku"),
                        name: row.get("name"),
                        quantity,
                        unit_price: Money::from_row(unit_price, &currency),
                        line_total: Money::from_row(unit_price.saturating_mul(quantity), &currency),
                    }
                })
                .collect())
        }
        .await
        .gql()
    }

    /// Every status change, oldest first.
    async fn timeline(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<TimelineEntry>> {
        async {
            let models = ctx.data_unchecked::<ReadModels>();
            let rows = sqlx::query(
                "SELECT event, status, detail, at FROM rm_orders.order_timeline
                  WHERE order_id = $1 ORDER BY at, global_position",
            )
            .bind(self.id)
            .fetch_all(&models.pool)
            .await?;
            rows.into_iter()
                .map(|row| {
                    Ok(TimelineEntry {
                        event: row.get("event"),
                        status: OrderStatus::parse(row.get("status"))?,
                        detail: row.get("detail"),
                        at: row.get("at"),
                    })
                })
                .collect::<QueryResult<Vec<_>>>()
        }
        .await
        .gql()
    }

    /// The order's payments, first requested first.
    async fn payments(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<OrderPayment>> {
        self.load_payments(ctx).await.gql()
    }

    /// The status of the latest payment (as `OrderPayment.status`); null before one is requested.
    async fn payment_status(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        self.load_payments(ctx)
            .await
            .map(|payments| payments.last().map(|p| p.status.clone()))
            .gql()
    }
}

impl Order {
    async fn load_payments(&self, ctx: &Context<'_>) -> QueryResult<Vec<OrderPayment>> {
        let models = ctx.data_unchecked::<ReadModels>();
        let rows = sqlx::query(
            "SELECT payment_id, status, amount, currency, captured, refunded, updated_at
               FROM rm_orders.payments WHERE order_id = $1 ORDER BY updated_at, payment_id",
        )
        .bind(self.id)
        .fetch_all(&models.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let currency: String = row.get("currency");
                let status: String = row.get("status");
                let status = PaymentRowStatus::parse(&status).ok_or_else(|| {
                    QueryError::internal(format!("unknown payment status `{status}`"))
                })?;
                Ok(OrderPayment {
                    id: row.get("payment_id"),
                    status: status.as_str().to_owned(),
                    amount: Money::from_row(row.get("amount"), &currency),
                    captured: Money::from_row(row.get("captured"), &currency),
                    refunded: Money::from_row(row.get("refunded"), &currency),
                    updated_at: row.get("updated_at"),
                })
            })
            .collect()
    }
}

const ORDER_COLUMNS: &str = "order_id, number, customer_id, status, currency, subtotal, discount,
    tax, shipping, total, refunded, failure, tracking, placed_at, updated_at";

fn order_from_row(row: &PgRow) -> QueryResult<Order> {
    let currency: String = row.get("currency");
    let money = |column: &str| Money::from_row(row.get(column), &currency);
    Ok(Order {
        id: row.get("order_id"),
        number: row.get("number"),
        customer_id: row.get("customer_id"),
        status: OrderStatus::parse(row.get("status"))?,
        totals: OrderTotals {
            subtotal: money("subtotal"),
            discount: money("discount"),
            tax: money("tax"),
            shipping: money("shipping"),
            total: money("total"),
            refunded: money("refunded"),
        },
        failure: row.get("failure"),
        tracking: row.get("tracking"),
        placed_at: row.get("placed_at"),
        updated_at: row.get("updated_at"),
    })
}

/// One order row, if it exists.
pub async fn find_order(models: &ReadModels, id: Uuid) -> QueryResult<Option<Order>> {
    let row = sqlx::query(&format!(
        "SELECT {ORDER_COLUMNS} FROM rm_orders.orders WHERE order_id = $1"
    ))
    .bind(id)
    .fetch_optional(&models.pool)
    .await?;
    row.as_ref().map(order_from_row).transpose()
}

/// Who may read an order: its customer, staff, or anyone holding a guest order's id.
pub fn may_read(viewer: &Viewer, customer_id: Option<Uuid>) -> QueryResult<()> {
    match customer_id {
        None => Ok(()),
        Some(_) if viewer.is_staff() => Ok(()),
        Some(owner) if viewer.customer() == Some(owner) => Ok(()),
        Some(_) => match viewer {
            Viewer::Guest => Err(QueryError::Unauthorized("sign in to see this order".into())),
            Viewer::Account { .. } => Err(QueryError::Forbidden(
                "this order belongs to another customer".into(),
            )),
        },
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct OrderEdge {
    pub cursor: String,
    pub node: Order,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct OrderConnection {
    pub edges: Vec<OrderEdge>,
    pub page_info: PageInfo,
    pub total_count: i64,
}

/// Filters of the staff's `orders`.
#[derive(InputObject, Clone, Debug, Default)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    pub customer_id: Option<Uuid>,
    /// Placed at or after.
    pub placed_from: Option<DateTime<Utc>>,
    /// Placed before.
    pub placed_to: Option<DateTime<Utc>>,
}

/// Newest first, keyset-paged: a cursor is the last row's `(placed_at, order_id)`.
pub async fn list_orders(
    models: &ReadModels,
    filter: &OrderFilter,
    first: Option<i32>,
    after: Option<&str>,
) -> QueryResult<OrderConnection> {
    let first = page_size(first)?;
    let after = after.map(decode_order_cursor).transpose()?;
    let status = filter.status.map(OrderStatus::as_text);
    let conditions = "($1::uuid IS NULL OR customer_id = $1)
        AND ($2::text IS NULL OR status = $2)
        AND ($3::timestamptz IS NULL OR placed_at >= $3)
        AND ($4::timestamptz IS NULL OR placed_at < $4)";
    let rows = sqlx::query(&format!(
        "SELECT {ORDER_COLUMNS} FROM rm_orders.orders
          WHERE {conditions}
            AND ($5::timestamptz IS NULL OR (placed_at, order_id) < ($5, $6))
          ORDER BY placed_at DESC, order_id DESC LIMIT $7"
    ))
    .bind(filter.customer_id)
    .bind(status)
    .bind(filter.placed_from)
    .bind(filter.placed_to)
    .bind(after.map(|(at, _)| at))
    .bind(after.map(|(_, id)| id))
    .bind(first as i64 + 1)
    .fetch_all(&models.pool)
    .await?;
    let total: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM rm_orders.orders WHERE {conditions}"
    ))
    .bind(filter.customer_id)
    .bind(status)
    .bind(filter.placed_from)
    .bind(filter.placed_to)
    .fetch_one(&models.pool)
    .await?;
    let has_next_page = rows.len() > first;
    let edges = rows
        .iter()
        .take(first)
        .map(|row| {
            let order = order_from_row(row)?;
            Ok(OrderEdge {
                cursor: order_cursor(order.placed_at, order.id),
                node: order,
            })
        })
        .collect::<QueryResult<Vec<_>>>()?;
    Ok(OrderConnection {
        page_info: PageInfo {
            has_next_page,
            has_previous_page: after.is_some(),
            start_cursor: edges.first().map(|e| e.cursor.clone()),
            end_cursor: edges.last().map(|e| e.cursor.clone()),
        },
        edges,
        total_count: total,
    })
}

fn order_cursor(placed_at: DateTime<Utc>, id: Uuid) -> String {
    encode_cursor("order", &format!("{}/{id}", placed_at.timestamp_micros()))
}

fn decode_order_cursor(cursor: &str) -> QueryResult<(DateTime<Utc>, Uuid)> {
    let invalid = || QueryError::validation(format!("`{cursor}` is not a valid cursor here"));
    let value = decode_cursor("order", cursor)?;
    let (micros, id) = value.split_once('/').ok_or_else(invalid)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(invalid)?;
    let id = id.parse::<Uuid>().map_err(|_| invalid())?;
    Ok((at, id))
}

/// The signed-in account.
#[derive(Clone, Debug)]
pub struct Me {
    pub id: Uuid,
    pub role: Role,
}

#[Object]
impl Me {
    async fn id(&self) -> Uuid {
        self.id
    }

    /// `customer`, `staff` or `auditor`.
    async fn role(&self) -> &'static str {
        self.role.as_str()
    }

    async fn email(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        async {
            let models = ctx.data_unchecked::<ReadModels>();
            Ok(accounts::contact_of(&models.pool, self.id)
                .await?
                .map(|contact| contact.email))
        }
        .await
        .gql()
    }

    /// My name.
    async fn name(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        let models = ctx.data_unchecked::<ReadModels>();
        super::account::profile(models, self.id)
            .await
            .map(|p| p.map(|p| p.name))
            .gql()
    }

    /// My phone number, if I gave one.
    async fn phone(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        let models = ctx.data_unchecked::<ReadModels>();
        super::account::profile(models, self.id)
            .await
            .map(|p| p.and_then(|p| p.phone))
            .gql()
    }

    /// My address book, oldest first.
    async fn addresses(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<super::account::SavedAddress>> {
        let models = ctx.data_unchecked::<ReadModels>();
        super::account::addresses(models, self.id).await.gql()
    }

    /// My default shipping address, if I chose one.
    async fn default_shipping_address(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<super::account::SavedAddress>> {
        let models = ctx.data_unchecked::<ReadModels>();
        let all = super::account::addresses(models, self.id).await.gql()?;
        Ok(all.into_iter().find(|a| a.default_shipping))
    }

    /// My default billing address, if I chose one.
    async fn default_billing_address(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<super::account::SavedAddress>> {
        let models = ctx.data_unchecked::<ReadModels>();
        let all = super::account::addresses(models, self.id).await.gql()?;
        Ok(all.into_iter().find(|a| a.default_billing))
    }

    /// My live sessions (signed-in devices), most recently used first.
    async fn sessions(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<super::account::AccountSession>> {
        let models = ctx.data_unchecked::<ReadModels>();
        super::account::sessions(models, self.id).await.gql()
    }

    /// My orders, newest first.
    #[graphql(
        complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity + crate::consistency::wait_cost(&position)"
    )]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        position: Option<String>,
    ) -> async_graphql::Result<OrderConnection> {
        async {
            let models = ctx.data_unchecked::<ReadModels>();
            await_position(ctx, ReadModel::Orders, position.as_deref()).await?;
            let filter = OrderFilter {
                customer_id: Some(self.id),
                ..OrderFilter::default()
            };
            list_orders(models, &filter, first, after.as_deref()).await
        }
        .await
        .gql()
    }
}

#[derive(Default)]
pub struct OrderQuery;

#[Object]
impl OrderQuery {
    /// An order: its customer's, any order for staff. Null if there is none (yet: pass the
    /// checkout's `position` to wait for it).
    #[graphql(complexity = "1 + child_complexity + crate::consistency::wait_cost(&position)")]
    async fn order(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        position: Option<String>,
    ) -> async_graphql::Result<Option<Order>> {
        async {
            let models = ctx.data_unchecked::<ReadModels>();
            let viewer = ctx.data_unchecked::<Viewer>();
            await_position(ctx, ReadModel::Orders, position.as_deref()).await?;
            let Some(order) = find_order(models, id).await? else {
                return Ok(None);
            };
            may_read(viewer, order.customer_id)?;
            Ok(Some(order))
        }
        .await
        .gql()
    }

    /// The signed-in account; `unauthorized` for guests.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Me> {
        let viewer = ctx.data_unchecked::<Viewer>();
        viewer.account().map(|(id, role)| Me { id, role }).gql()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdl_documents_every_payment_status_and_no_other() {
        let texts: Vec<String> = PaymentRowStatus::ALL
            .iter()
            .map(|s| format!("`{}`", s.as_str()))
            .collect();
        let (last, rest) = texts.split_last().unwrap();
        let documented = format!("{} or {last}", rest.join(", "));
        let sdl = crate::sdl()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            sdl.contains(&documented),
            "OrderPayment.status should document {documented}"
        );
    }

    #[test]
    fn order_statuses_read_back_from_their_text_form() {
        for status in domain::order::OrderStatus::ALL {
            let shown = OrderStatus::parse(status.as_str()).unwrap();
            assert_eq!(shown.as_text(), status.as_str());
        }
    }
}
