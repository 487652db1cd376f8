//! Orders, their lines and status timeline, each customer's order history, payments per order,
//! and sales by day and product (`rm_orders`). Batch-applied: the orders a batch touches are read
//! once, folded in memory and written back with one statement per table.

use std::collections::{BTreeMap, BTreeSet, HashMap};

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

/// A payment's status as the orders read model stores it (`payments.status`) and the query API
/// shows it (`OrderPayment.status`, `Order.paymentStatus`): the payment aggregate's status, with
/// a partial refund told apart from a captured payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentRowStatus {
    Requested,
    Authorized,
    Captured,
    PartiallyRefunded,
    Refunded,
    Failed,
    Cancelled,
    Expired,
}

impl PaymentRowStatus {
    pub const ALL: [PaymentRowStatus; 8] = [
        PaymentRowStatus::Requested,
        PaymentRowStatus::Authorized,
        PaymentRowStatus::Captured,
        PaymentRowStatus::PartiallyRefunded,
        PaymentRowStatus::Refunded,
        PaymentRowStatus::Failed,
        PaymentRowStatus::Cancelled,
        PaymentRowStatus::Expired,
    ];

    /// The one text form, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentRowStatus::Requested => "requested",
            PaymentRowStatus::Authorized => "authorized",
            PaymentRowStatus::Captured => "captured",
            PaymentRowStatus::PartiallyRefunded => "partially_refunded",
            PaymentRowStatus::Refunded => "refunded",
            PaymentRowStatus::Failed => "failed",
            PaymentRowStatus::Cancelled => "cancelled",
            PaymentRowStatus::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<PaymentRowStatus> {
        PaymentRowStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
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
             CREATE TABLE {s}.sales_daily (
                day      date NOT NULL,
                sku      text NOT NULL,
                currency text NOT NULL,
                units    bigint NOT NULL,
                revenue  bigint NOT NULL,
                PRIMARY KEY (day, sku, currency));"
        )
    }

    /// Orders, lines, timelines and payments belong to one stream each; sales by day are sums
    /// upserted in key order.
    fn rebuild_writers(&self) -> usize {
        2
    }

    fn indexes(&self, s: &str) -> String {
        format!(
            "CREATE INDEX ON {s}.orders (customer_id, placed_at DESC); CREATE INDEX ON {s}.orders (status, placed_at DESC); CREATE INDEX ON {s}.payments (order_id);"
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
        // the rows this batch continues: streams that start in it have nothing to load
        let ids = |aggregate_type: &str, first: fn(&AnyEvent) -> bool| -> Vec<Uuid> {
            let of_type = || {
                relevant
                    .iter()
                    .filter(move |(e, _)| e.aggregate_type == aggregate_type)
            };
            let started: BTreeSet<&str> = of_type()
                .filter(|(_, d)| first(d))
                .map(|(e, _)| e.aggregate_id.as_str())
                .collect();
            of_type()
                .filter(|(e, _)| !started.contains(e.aggregate_id.as_str()))
                .filter_map(|(e, _)| e.aggregate_id.parse().ok())
                .collect::<BTreeSet<Uuid>>()
                .into_iter()
                .collect()
        };
        let order_ids = ids("order", placed);
        let payment_ids = ids("payment", requested);
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
                                status: OrderStatus::AwaitingStock.as_str().to_owned(),
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
                    row.status = status.as_str().to_owned();
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
                                status: PaymentRowStatus::Requested.as_str().into(),
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
                            row.status = PaymentRowStatus::Authorized.as_str().into();
                            row.provider_ref = Some(provider_ref);
                            at
                        }
                        PaymentEvent::PaymentCaptured { amount, at } => {
                            row.status = PaymentRowStatus::Captured.as_str().into();
                            row.captured = amount.amount_minor;
                            at
                        }
                        PaymentEvent::PaymentRefunded {
                            refunded_total, at, ..
                        } => {
                            row.refunded = refunded_total.amount_minor;
                            row.status = if row.refunded >= row.captured {
                                PaymentRowStatus::Refunded
                            } else {
                                PaymentRowStatus::PartiallyRefunded
                            }
                            .as_str()
                            .into();
                            at
                        }
                        PaymentEvent::PaymentFailed { at, .. } => {
                            row.status = PaymentRowStatus::Failed.as_str().into();
                            at
                        }
                        PaymentEvent::PaymentCancelled { at } => {
                            row.status = PaymentRowStatus::Cancelled.as_str().into();
                            at
                        }
                        PaymentEvent::PaymentExpired { at } => {
                            row.status = PaymentRowStatus::Expired.as_str().into();
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
        write_sales(tx, s, &confirmed, &lines, &orders).await?;
        Ok(())
    }
}

/// An order's first event: its row starts here, nothing to load.
fn placed(event: &AnyEvent) -> bool {
    matches!(event, AnyEvent::Order(OrderEvent::OrderPlaced { .. }))
}

/// A payment's first event.
fn requested(event: &AnyEvent) -> bool {
    matches!(
        event,
        AnyEvent::Payment(PaymentEvent::PaymentRequested { .. })
    )
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

/// Confirmed orders' lines count as sales on the day of confirmation. The lines of orders placed
/// in this batch are at hand, the others' are read; the sums go out in one upsert.
async fn write_sales(
    tx: &mut Transaction<'_, Postgres>,
    s: &str,
    confirmed: &[(Uuid, NaiveDate)],
    lines: &[LineRow],
    orders: &HashMap<Uuid, OrderRow>,
) -> Result<()> {
    if confirmed.is_empty() {
        return Ok(());
    }
    // (sku, quantity, unit price) per order
    let mut order_lines: HashMap<Uuid, Vec<(String, i64, i64)>> = HashMap::new();
    for line in lines {
        order_lines.entry(line.order_id).or_default().push((
            line.sku.clone(),
            line.quantity,
            line.unit_price,
        ));
    }
    let missing: Vec<Uuid> = confirmed
        .iter()
        .map(|(order, _)| *order)
        .filter(|order| !order_lines.contains_key(order))
        .collect();
    if !missing.is_empty() {
        let stored: Vec<(Uuid, String, i64, i64)> = sqlx::query_as(&format!(
            "SELECT order_id, sku, quantity, unit_price FROM {s}.order_lines WHERE order_id = ANY($1)"
        ))
        .bind(&missing)
        .fetch_all(&mut **tx)
        .await?;
        for (order, sku, quantity, unit_price) in stored {
            order_lines
                .entry(order)
                .or_default()
                .push((sku, quantity, unit_price));
        }
    }
    // (day, sku, currency) → (units, revenue)
    let mut sales: BTreeMap<(NaiveDate, &str, &str), (i64, i64)> = BTreeMap::new();
    for (order, day) in confirmed {
        let (Some(row), Some(lines)) = (orders.get(order), order_lines.get(order)) else {
            continue;
        };
        for (sku, quantity, unit_price) in lines {
            let sum = sales
                .entry((*day, sku.as_str(), row.currency.as_str()))
                .or_default();
            sum.0 += quantity;
            sum.1 += quantity * unit_price;
        }
    }
    if sales.is_empty() {
        return Ok(());
    }
    sqlx::query(&format!(
        "INSERT INTO {s}.sales_daily (day, sku, currency, units, revenue)
         SELECT * FROM UNNEST($1::date[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
         ON CONFLICT (day, sku, currency) DO UPDATE SET
            units = sales_daily.units + EXCLUDED.units,
            revenue = sales_daily.revenue + EXCLUDED.revenue"
    ))
    .bind(sales.keys().map(|k| k.0).collect::<Vec<_>>())
    .bind(sales.keys().map(|k| k.1).collect::<Vec<_>>())
    .bind(sales.keys().map(|k| k.2).collect::<Vec<_>>())
    .bind(sales.values().map(|v| v.0).collect::<Vec<_>>())
    .bind(sales.values().map(|v| v.1).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
