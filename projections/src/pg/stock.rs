//! Stock levels and open reservations per SKU, for staff (`rm_stock`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::InventoryEvent;
use eventlog::RecordedEvent;
use schemas::AnyEvent;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{decode, PgProjection, Result};

pub struct Stock;

/// Changes of one SKU within a batch.
#[derive(Default)]
struct Delta {
    on_hand: i64,
    reserved: i64,
    threshold: Option<i64>,
}

#[async_trait]
impl PgProjection for Stock {
    fn name(&self) -> &'static str {
        "stock"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["inventory"]
    }

    fn tables(&self, s: &str) -> String {
        format!(
            "CREATE TABLE {s}.stock (
                sku                 text PRIMARY KEY,
                on_hand             bigint NOT NULL,
                reserved            bigint NOT NULL,
                -- NULL until set: the domain's default (0) applies
                low_stock_threshold bigint);
             CREATE TABLE {s}.reservations (
                sku        text NOT NULL,
                order_id   uuid NOT NULL,
                quantity   bigint NOT NULL,
                expires_at timestamptz NOT NULL,
                PRIMARY KEY (sku, order_id));"
        )
    }

    async fn apply(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        s: &str,
        events: &[RecordedEvent],
    ) -> Result<()> {
        let mut deltas: BTreeMap<String, Delta> = BTreeMap::new();
        // the final state of each reservation touched in the batch: Some = open, None = gone
        let mut reservations: BTreeMap<(String, Uuid), Option<(i64, DateTime<Utc>)>> =
            BTreeMap::new();
        for event in events.iter().filter(|e| e.aggregate_type == "inventory") {
            let AnyEvent::Inventory(inventory) = decode(event)? else {
                continue;
            };
            let sku = event.aggregate_id.clone();
            let delta = deltas.entry(sku.clone()).or_default();
            match inventory {
                InventoryEvent::StockReceived { quantity, .. }
                | InventoryEvent::StockReturned { quantity, .. } => {
                    delta.on_hand += i64::from(quantity.get())
                }
                InventoryEvent::StockAdjusted { delta: change, .. } => delta.on_hand += change,
                InventoryEvent::StockReserved {
                    order_id,
                    quantity,
                    expires_at,
                } => {
                    delta.reserved += i64::from(quantity.get());
                    reservations.insert(
                        (sku, order_id.as_uuid()),
                        Some((i64::from(quantity.get()), expires_at)),
                    );
                }
                InventoryEvent::ReservationReleased {
                    order_id, quantity, ..
                } => {
                    delta.reserved -= i64::from(quantity.get());
                    reservations.insert((sku, order_id.as_uuid()), None);
                }
                InventoryEvent::ReservationCommitted { order_id, quantity } => {
                    delta.reserved -= i64::from(quantity.get());
                    delta.on_hand -= i64::from(quantity.get());
                    reservations.insert((sku, order_id.as_uuid()), None);
                }
                InventoryEvent::LowStockThresholdSet { threshold } => {
                    delta.threshold = Some(i64::try_from(threshold).unwrap_or(i64::MAX))
                }
                InventoryEvent::ReservationRefused { .. } | InventoryEvent::LowStock { .. } => {}
            }
        }
        if !deltas.is_empty() {
            let skus: Vec<&String> = deltas.keys().collect();
            let on_hand: Vec<i64> = deltas.values().map(|d| d.on_hand).collect();
            let reserved: Vec<i64> = deltas.values().map(|d| d.reserved).collect();
            let threshold: Vec<Option<i64>> = deltas.values().map(|d| d.threshold).collect();
            sqlx::query(&format!(
                "INSERT INTO {s}.stock (sku, on_hand, reserved, low_stock_threshold)
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])
                 ON CONFLICT (sku) DO UPDATE SET
                    on_hand = stock.on_hand + EXCLUDED.on_hand,
                    reserved = stock.reserved + EXCLUDED.reserved,
                    low_stock_threshold = coalesce(EXCLUDED.low_stock_threshold, stock.low_stock_threshold)"
            ))
            .bind(skus)
            .bind(on_hand)
            .bind(reserved)
            .bind(threshold)
            .execute(&mut **tx)
            .await?;
        }
        let (open, gone): (Vec<_>, Vec<_>) = reservations
            .into_iter()
            .partition(|(_, state)| state.is_some());
        if !gone.is_empty() {
            let skus: Vec<&String> = gone.iter().map(|((sku, _), _)| sku).collect();
            let orders: Vec<Uuid> = gone.iter().map(|((_, order), _)| *order).collect();
            sqlx::query(&format!(
                "DELETE FROM {s}.reservations r USING UNNEST($1::text[], $2::uuid[]) AS g(sku, order_id)
                  WHERE r.sku = g.sku AND r.order_id = g.order_id"
            ))
            .bind(skus)
            .bind(orders)
            .execute(&mut **tx)
            .await?;
        }
        if !open.is_empty() {
            let skus: Vec<&String> = open.iter().map(|((sku, _), _)| sku).collect();
            let orders: Vec<Uuid> = open.iter().map(|((_, order), _)| *order).collect();
            let quantities: Vec<i64> = open.iter().filter_map(|(_, s)| s.map(|s| s.0)).collect();
            let expiries: Vec<DateTime<Utc>> =
                open.iter().filter_map(|(_, s)| s.map(|s| s.1)).collect();
            sqlx::query(&format!(
                "INSERT INTO {s}.reservations (sku, order_id, quantity, expires_at)
                 SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::bigint[], $4::timestamptz[])
                 ON CONFLICT (sku, order_id) DO UPDATE SET quantity = EXCLUDED.quantity, expires_at = EXCLUDED.expires_at"
            ))
            .bind(skus)
            .bind(orders)
            .bind(quantities)
            .bind(expiries)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}
