//! Orders, their lines and status timeline, each customer's order history, payments per order,
//! and sales by day and product (`rm_orders`). Batch-applied: the orders a batch touches are read
//! once, folded in memory and written back with one statement per table.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use domain::checkout::failure_text;
use domain::order::OrderStatus;
use domain::{OrderEvent, PaymentEvent};
use eventlog::RecordedEvent;
use schemas::AnyEvent;
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use super::{decode, PgProjection, Result};

pub struct Orders;

#[derive(Clone, Debug)]
struct OrderRow {
    number: i64,
    customer_id: Option<Uuid>,
    status: String,
    currency: String,
    subtotal: i64,
    discount: i64,
    tax: i64,
    shipping: i64,
    total: i64,
    refunded: i64,
    failure: Option<String>,
    tracking: Option<String>,
    placed_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
struct PaymentRow {
    order_id: Uuid,
    status: String,
    amount: i64,
    currency: String,
    captured: i64,
    refunded: i64,
    provider_ref: Option<String>,
    updated_at: DateTime<Utc>,
}

/// One line of an order.
#[derive(Clone, Debug)]
struct LineRow {
    order_id: Uuid,
    line: i32,
    sku: String,
    name: String,
    quantity: i64,
    unit_price: i64,
}

/// One status change of an order.
#[derive(Clone, Debug)]
struct TimelineRow {
    order_id: Uuid,
    global_position: i64,
    event: String,
    status: String,
    detail: Option<String>,
    at: DateTime<Utc>,
}

pub fn status_name(status: OrderStatus) -> &'static str {
    match status {
        OrderStatus::AwaitingStock => "awaiting_stock",
        OrderStatus::AwaitingPayment => "awaiting_payment",
        OrderStatus::Confirmed => "confirmed",
        OrderStatus::Shipped => "shipped",
        OrderStatus::Delivered => "delivered",
        OrderStatus::Cancelled => "cancelled",
        OrderStatus::Failed => "failed",
        OrderStatus::Refunded => "refunded",
    }
}

#[async_trait]
impl PgProjection for Orders {
    fn name(&self) -> &'static str {
        "orders"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["order", "payment"]
    }

    fn tables(&self, s: &str) -> String {
        format!(
            "CREATE TABLE {s}.orders (
                order_id    uuid PRIMARY KEY,
                number      bigint NOT NULL,
                customer_id uuid,
                status      text NOT NULL,
                currency    text NOT NULL,
                subtotal    bigint NOT NULL,
                discount    bigint NOT NULL,
                tax         bigint NOT NULL,
                shipping    bigint NOT NULL,
                total       bigint NOT NULL,
                refunded    bigint NOT NULL,
                failure     text,
                tracking    text,
                placed_at   timestamptz NOT NULL,
                updated_at  timestamptz NOT NULL);
             CREATE INDEX ON {s}.orders (customer_id, placed_at DESC);
             CREATE INDEX ON {s}.orders (status, placed_at DESC);
             CREATE TABLE {s}.order_lines (
                order_id   uuid NOT NULL,
                line       integer NOT NULL,
                sku        text NOT NULL,
                name       text NOT NULL,
                quantity   bigint NOT NULL,
                unit_price bigint NOT NULL,
                PRIMARY KEY (order_id, line));
             CREATE TABLE {s}.order_timeline (
                order_id        uuid NOT NULL,
                global_position bigint NOT NULL,
                event           text NOT NULL,
                status          text NOT NULL,
                detail          text,
                at              timestamptz NOT NULL,
                PRIMARY KEY (order_id, global_position));
             CREATE TABLE {s}.payments (
                payment_id   uuid PRIMARY KEY,
                order_id     uuid NOT NULL,
                status       text NOT NULL,
                amount       bigint NOT NULL,
                currency     text NOT NULL,
                captured     bigint NOT NULL,
                refunded     bigint NOT NULL,
                provider_ref text,
                updated_at   timestamptz NOT NULL);
             CREATE INDEX ON {s}.payments (order_id);
             CREATE TABLE {s}.sales_daily (
                day      date NOT NULL,
                sku      text NOT NULL,
                currency text NOT NULL,
                units    bigint NOT NULL,
                revenue  bigint NOT NULL,
                PRIMARY KEY (day, sku, currency));"
        )
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        s: &str,
        events: &[RecordedEvent],
    ) -> Result<()> {
        let relevant: Vec<(&RecordedEvent, AnyEvent)> = events
            .iter()
            .filter(|e| e.aggregate_type == "order" || e.aggregate_type == "payment")
            .map(|e| decode(e).map(|d| (e, d)))
            .collect::<Result<_>>()?;
        if relevant.is_empty() {
            return Ok(());
        }
        let order_ids: Vec<Uuid> = relevant
            .iter()
            .filter(|(e, _)| e.aggregate_type == "order")
            .filter_map(|(e, _)| e.aggregate_id.parse().ok())
            .collect();
        let payment_ids: Vec<Uuid> = relevant
            .iter()
            .filter(|(e, _)| e.aggregate_type == "payment")
            .filter_map(|(e, _)| e.aggregate_id.parse().ok())
            .collect();
        let mut orders = load_orders(tx, s, &order_ids).await?;
        let mut payments = load_payments(tx, s, &payment_ids).await?;
        let mut lines: Vec<LineRow> = Vec::new();
        let mut timeline: Vec<TimelineRow> = Vec::new();
        let mut confirmed: Vec<(Uuid, NaiveDate)> = Vec::new();
        let mut changed_orders: BTreeSet<Uuid> = BTreeSet::new();
        let mut changed_payments: BTreeSet<Uuid> = BTreeSet::new();

        for (event, decoded) in relevant {
            let Ok(id) = event.aggregate_id.parse::<Uuid>() else {
                continue;
            };
            match decoded {
                AnyEvent::Order(order_event) => {
                    if let OrderEvent::OrderPlaced {
                        order_number,
                        customer,
                        lines: placed_lines,
                        currency,
                        totals,
                        placed_at,
                        ..
                    } = &order_event
                    {
                        orders.insert(
                            id,
                            OrderRow {
                                number: order_number.0 as i64,
                                customer_id: customer.map(|c| c.as_uuid()),
                                status: status_name(OrderStatus::AwaitingStock).to_owned(),
                                currency: currency.as_str().to_owned(),
                                subtotal: totals.subtotal.amount_minor,
                                discount: totals.discount.amount_minor,
                                tax: totals.tax.amount_minor,
                                shipping: totals.shipping.amount_minor,
                                total: totals.total.amount_minor,
                                refunded: 0,
                                failure: None,
                                tracking: None,
                                placed_at: *placed_at,
                                updated_at: *placed_at,
                            },
                        );
                        for (n, line) in placed_lines.iter().enumerate() {
                            lines.push(LineRow {
                                order_id: id,
                                line: n as i32,
                                sku: line.sku.to_string(),
                                name: line.name.clone(),
                                quantity: i64::from(line.quantity.get()),
                                unit_price: line.unit_price.amount_minor,
                            });
                        }
                    }
                    let Some(row) = orders.get_mut(&id) else {
                        continue;
                    };
                    let (status, detail, at) = match order_event {
                        OrderEvent::OrderPlaced { placed_at, .. } => {
                            (OrderStatus::AwaitingStock, None, placed_at)
                        }
                        OrderEvent::OrderStockReserved { at } => {
                            (OrderStatus::AwaitingPayment, None, at)
                        }
                        OrderEvent::OrderConfirmed { at, .. } => {
                            confirmed.push((id, at.date_naive()));
                            (OrderStatus::Confirmed, None, at)
                        }
                        OrderEvent::OrderShipped { tracking, at } => {
                            row.tracking = tracking.clone();
                            (OrderStatus::Shipped, tracking, at)
                        }
                        OrderEvent::OrderDelivered { at } => (OrderStatus::Delivered, None, at),
                        OrderEvent::OrderCancelled { reason, at, .. } => {
                            (OrderStatus::Cancelled, Some(reason), at)
                        }
                        OrderEvent::OrderFailed { reason, at } => {
                            let text = failure_text(&reason);
                            row.failure = Some(text.clone());
                            (OrderStatus::Failed, Some(text), at)
                        }
                        OrderEvent::OrderRefunded {
                            refunded_total,
                            amount,
                            at,
                            ..
                        } => {
                            row.refunded = refunded_total.amount_minor;
                            let status = row.status.clone();
                            timeline.push(TimelineRow {
                                order_id: id,
                                global_position: event.position.global_position,
                                event: event.event_type.clone(),
                                status,
                                detail: Some(format!("refunded {}", amount.amount_minor)),
                                at,
                            });
                            row.updated_at = at;
                            changed_orders.insert(id);
                            continue;
                        }
                        OrderEvent::OrderFullyRefunded { at, .. } => {
                            (OrderStatus::Refunded, None, at)
                        }
                    };
                    row.status = status_name(status).to_owned();
                    row.updated_at = at;
                    timeline.push(TimelineRow {
                        order_id: id,
                        global_position: event.position.global_position,
                        event: event.event_type.clone(),
                        status: row.status.clone(),
                        detail,
                        at,
                    });
                    changed_orders.insert(id);
                }
                AnyEvent::Payment(payment_event) => {
                    if let PaymentEvent::PaymentRequested {
                        order_id,
                        amount,
                        requested_at,
                        ..
                    } = &payment_event
                    {
                        payments.insert(
                            id,
                            PaymentRow {
                                order_id: order_id.as_uuid(),
                                status: "requested".into(),
                                amount: amount.amount_minor,
                                currency: amount.currency.as_str().to_owned(),
                                captured: 0,
                                refunded: 0,
                                provider_ref: None,
                                updated_at: *requested_at,
                            },
                        );
                        changed_payments.insert(id);
                        continue;
                    }
                    let Some(row) = payments.get_mut(&id) else {
                        continue;
                    };
                    let at = match payment_event {
                        PaymentEvent::PaymentRequested { requested_at, .. } => requested_at,
                        PaymentEvent::PaymentAuthorized {
                            provider_ref, at, ..
                        } => {
                            row.status = "authorized".into();
                            row.provider_ref = Some(provider_ref);
                            at
                        }
                        PaymentEvent::PaymentCaptured { amount, at } => {
                            row.status = "captured".into();
                            row.captured = amount.amount_minor;
                            at
                        }
                        PaymentEvent::PaymentRefunded {
                            refunded_total, at, ..
                        } => {
                            row.refunded = refunded_total.amount_minor;
                            row.status = if row.refunded >= row.captured {
                                "refunded"
                            } else {
                                "partially_refunded"
                            }
                            .into();
                            at
                        }
                        PaymentEvent::PaymentFailed { at, .. } => {
                            row.status = "failed".into();
                            at
                        }
                        PaymentEvent::PaymentCancelled { at } => {
                            row.status = "cancelled".into();
                            at
                        }
                        PaymentEvent::PaymentExpired { at } => {
                            row.status = "expired".into();
                            at
                        }
                    };
                    row.updated_at = at;
                    changed_payments.insert(id);
                }
                _ => {}
            }
        }

        write_lines(tx, s, &lines).await?;
        write_orders(tx, s, &orders, &changed_orders).await?;
        write_timeline(tx, s, &timeline).await?;
        write_payments(tx, s, &payments, &changed_payments).await?;
        write_sales(tx, s, &confirmed).await?;
        Ok(())
    }
}

async fn load_orders(
    tx: &mut Transaction<'_, Postgres>,
    s: &str,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, OrderRow>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(&format!(
        "SELECT order_id, number, customer_id, status, currency, subtotal, discount, tax, shipping, total,
                refunded, failure, tracking, placed_at, updated_at
           FROM {s}.orders WHERE order_id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                row.get("order_id"),
                OrderRow {
                    number: row.get("number"),
                    customer_id: row.get("customer_id"),
                    status: row.get("status"),
                    currency: row.get("currency"),
                    subtotal: row.get("subtotal"),
                    discount: row.get("discount"),
                    tax: row.get("tax"),
                    shipping: row.get("shipping"),
                    total: row.get("total"),
                    refunded: row.get("refunded"),
                    failure: row.get("failure"),
                    tracking: row.get("tracking"),
                    placed_at: row.get("placed_at"),
                    updated_at: row.get("updated_at"),
                },
            )
        })
        .collect())
}

async fn load_payments(
    tx: &mut Transaction<'_, Postgres>,
    s: &str,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, PaymentRow>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(&format!(
        "SELECT payment_id, order_id, status, amount, currency, captured, refunded, provider_ref, updated_at
           FROM {s}.payments WHERE payment_id = ANY($1)"
    ))
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                row.get("payment_id"),
                PaymentRow {
                    order_id: row.get("order_id"),
                    status: row.get("status"),
                    amount: row.get("amount"),
                    currency: row.get("currency"),
                    captured: row.get("captured"),
                    refunded: row.get("refunded"),
                    provider_ref: row.get("provider_ref"),
                    updated_at: row.get("updated_at"),
                },
            )
        })
        .collect())
}

async fn write_lines(tx: &mut Transaction<'_, Postgres>, s: &str, lines: &[LineRow]) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    sqlx::query(&format!(
        "INSERT INTO {s}.order_lines (order_id, line, sku, name, quantity, unit_price)
         SELECT * FROM UNNEST($1::uuid[], $2::int[], $3::text[], $4::text[], $5::bigint[], $6::bigint[])
         ON CONFLICT (order_id, line) DO NOTHING"
    ))
    .bind(lines.iter().map(|l| l.order_id).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.line).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.sku.clone()).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.name.clone()).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.quantity).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.unit_price).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn write_orders(
    tx: &mut Transaction<'_, Postgres>,
    s: &str,
    orders: &HashMap<Uuid, OrderRow>,
    changed: &BTreeSet<Uuid>,
) -> Result<()> {
    let rows: Vec<(&Uuid, &OrderRow)> = changed
        .iter()
        .filter_map(|id| orders.get(id).map(|r| (id, r)))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(&format!(
        "INSERT INTO {s}.orders (order_id, number, customer_id, status, currency, subtotal, discount, tax,
                                 shipping, total, refunded, failure, tracking, placed_at, updated_at)
         SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::uuid[], $4::text[], $5::text[], $6::bigint[],
                              $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[],
                              $12::text[], $13::text[], $14::timestamptz[], $15::timestamptz[])
         ON CONFLICT (order_id) DO UPDATE SET
            status = EXCLUDED.status, refunded = EXCLUDED.refunded, failure = EXCLUDED.failure,
            tracking = EXCLUDED.tracking, updated_at = EXCLUDED.updated_at"
    ))
    .bind(rows.iter().map(|(id, _)| **id).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.number).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.customer_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.status.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.currency.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.subtotal).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.discount).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.tax).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.shipping).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.total).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.refunded).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.failure.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.tracking.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.placed_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.updated_at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn write_timeline(
    tx: &mut Transaction<'_, Postgres>,
    s: &str,
    timeline: &[TimelineRow],
) -> Result<()> {
    if timeline.is_empty() {
        return Ok(());
    }
    sqlx::query(&format!(
        "INSERT INTO {s}.order_timeline (order_id, global_position, event, status, detail, at)
         SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
         ON CONFLICT (order_id, global_position) DO NOTHING"
    ))
    .bind(timeline.iter().map(|t| t.order_id).collect::<Vec<_>>())
    .bind(timeline.iter().map(|t| t.global_position).collect::<Vec<_>>())
    .bind(timeline.iter().map(|t| t.event.clone()).collect::<Vec<_>>())
    .bind(timeline.iter().map(|t| t.status.clone()).collect::<Vec<_>>())
    .bind(timeline.iter().map(|t| t.detail.clone()).collect::<Vec<_>>())
    .bind(timeline.iter().map(|t| t.at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn write_payments(
    tx: &mut Transaction<'_, Postgres>,
    s: &str,
    payments: &HashMap<Uuid, PaymentRow>,
    changed: &BTreeSet<Uuid>,
) -> Result<()> {
    let rows: Vec<(&Uuid, &PaymentRow)> = changed
        .iter()
        .filter_map(|id| payments.get(id).map(|r| (id, r)))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(&format!(
        "INSERT INTO {s}.payments (payment_id, order_id, status, amount, currency, captured, refunded, provider_ref, updated_at)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::bigint[],
                              $7::bigint[], $8::text[], $9::timestamptz[])
         ON CONFLICT (payment_id) DO UPDATE SET
            status = EXCLUDED.status, captured = EXCLUDED.captured, refunded = EXCLUDED.refunded,
            provider_ref = EXCLUDED.provider_ref, updated_at = EXCLUDED.updated_at"
    ))
    .bind(rows.iter().map(|(id, _)| **id).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.order_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.status.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.amount).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.currency.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.captured).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.refunded).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.provider_ref.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, r)| r.updated_at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Confirmed orders' lines count as sales on the day of confirmation.
async fn write_sales(
    tx: &mut Transaction<'_, Postgres>,
    s: &str,
    confirmed: &[(Uuid, NaiveDate)],
) -> Result<()> {
    if confirmed.is_empty() {
        return Ok(());
    }
    sqlx::query(&format!(
        "INSERT INTO {s}.sales_daily (day, sku, currency, units, revenue)
         SELECT c.day, l.sku, o.currency, sum(l.quantity), sum(l.quantity * l.unit_price)
           FROM UNNEST($1::uuid[], $2::date[]) AS c(order_id, day)
           JOIN {s}.order_lines l ON l.order_id = c.order_id
           JOIN {s}.orders o ON o.order_id = c.order_id
          GROUP BY c.day, l.sku, o.currency
         ON CONFLICT (day, sku, currency) DO UPDATE SET
            units = sales_daily.units + EXCLUDED.units,
            revenue = sales_daily.revenue + EXCLUDED.revenue"
    ))
    .bind(confirmed.iter().map(|c| c.0).collect::<Vec<_>>())
    .bind(confirmed.iter().map(|c| c.1).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
