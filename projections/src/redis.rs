//! Redis read models: what the storefront reads on every page view — carts (lines, totals,
//! coupon), product documents, and each customer's recent orders. Keys are namespaced and
//! versioned (`shop:v1:...`). At least once with idempotent writes: every document carries the
//! sequence of the last event folded into it, and a Lua script writes only a newer one, so a
//! replay after a crash changes nothing. The checkpoint (`redis:v1`) is saved after the writes.

use std::collections::BTreeMap;
use std::time::Duration;

use cqrs_es::Aggregate;
use domain::{Cart, Order, Product};
use eventlog::{checkpoint, log, RecordedEvent};
use redis::aio::ConnectionManager;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::PgPool;

/// Key prefix: bump the version when a document's shape changes, and rebuild.
pub const PREFIX: &str = "shop:v1";
/// The subscription's checkpoint name.
pub const SUBSCRIPTION: &str = "redis:v1";
/// How many recent orders a customer's list keeps.
pub const RECENT_ORDERS: isize = 20;

#[derive(Debug, thiserror::Error)]
pub enum RedisModelError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("event log: {0}")]
    Log(#[from] eventlog::Error),
    #[error("document: {0}")]
    Json(#[from] serde_json::Error),
    #[error("event {0} cannot be read: {1}")]
    Event(uuid::Uuid, String),
}

/// Writes `doc` under `key` only if its `seq` is newer than the stored one.
const WRITE_IF_NEWER: &str = r"
local stored = redis.call('HGET', KEYS[1], 'seq')
if stored and tonumber(stored) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'doc', ARGV[2])
return 1";

pub struct RedisReadModels {
    connection: ConnectionManager,
    write: redis::Script,
    prefix: String,
}

impl RedisReadModels {
    /// Connects with bounded timeouts (a Redis that is down must not hang the projector).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, RedisModelError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let connection = client.get_connection_manager_with_config(config).await?;
        Ok(Self {
            connection,
            write: redis::Script::new(WRITE_IF_NEWER),
            prefix: prefix.to_owned(),
        })
    }

    /// A stored document: `(sequence, document)`.
    pub async fn document(
        &self,
        kind: &str,
        id: &str,
    ) -> Result<Option<(i64, Value)>, RedisModelError> {
        let mut connection = self.connection.clone();
        let (seq, doc): (Option<i64>, Option<String>) = redis::cmd("HMGET")
            .arg(format!("{}:{kind}:{id}", self.prefix))
            .arg("seq")
            .arg("doc")
            .query_async(&mut connection)
            .await?;
        match (seq, doc) {
            (Some(seq), Some(doc)) => Ok(Some((seq, serde_json::from_str(&doc)?))),
            _ => Ok(None),
        }
    }

    /// A customer's most recent order ids, newest first.
    pub async fn recent_orders(&self, customer: &str) -> Result<Vec<String>, RedisModelError> {
        let mut connection = self.connection.clone();
        Ok(redis::cmd("ZREVRANGE")
            .arg(format!("{}:customer:{customer}:orders", self.prefix))
            .arg(0)
            .arg(RECENT_ORDERS - 1)
            .query_async(&mut connection)
            .await?)
    }

    /// Reads the next batch after the checkpoint, folds it into the documents, saves the
    /// checkpoint; the number of events read.
    pub async fn follow(&self, pool: &PgPool, limit: i64) -> Result<usize, RedisModelError> {
        let position = checkpoint::load(pool, SUBSCRIPTION).await?;
        let batch =
            log::read_after_for(pool, position, limit, &["cart", "product", "order"]).await?;
        let Some(last) = batch.last() else {
            return Ok(0);
        };
        self.apply(&batch).await?;
        checkpoint::save(pool, SUBSCRIPTION, last.position).await?;
        Ok(batch.len())
    }

    /// Folds a batch into the documents it touches, one read and one guarded write per stream.
    pub async fn apply(&self, events: &[RecordedEvent]) -> Result<(), RedisModelError> {
        let mut streams: BTreeMap<(&str, &str), Vec<&RecordedEvent>> = BTreeMap::new();
        for event in events {
            if matches!(event.aggregate_type.as_str(), "cart" | "product" | "order") {
                streams
                    .entry((event.aggregate_type.as_str(), event.aggregate_id.as_str()))
                    .or_default()
                    .push(event);
            }
        }
        for ((kind, id), events) in streams {
            match kind {
                "cart" => {
                    self.fold::<Cart>(kind, id, &events, cart_view).await?;
                }
                "product" => {
                    self.fold::<Product>(kind, id, &events, product_view)
                        .await?;
                }
                _ => {
                    if let Some(view) = self.fold::<Order>(kind, id, &events, order_view).await? {
                        self.index_recent(id, &view).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Folds `events` into the stored aggregate state of one stream and writes the document if
    /// it moved forward; the new view when written.
    async fn fold<A>(
        &self,
        kind: &str,
        id: &str,
        events: &[&RecordedEvent],
        view: fn(&A) -> Value,
    ) -> Result<Option<Value>, RedisModelError>
    where
        A: Aggregate + Serialize + DeserializeOwned,
    {
        let (mut seq, mut state) = match self.document(kind, id).await? {
            Some((seq, doc)) => (seq, serde_json::from_value::<A>(doc["state"].clone())?),
            None => (0, A::default()),
        };
        let stored = seq;
        for event in events.iter().filter(|e| e.sequence > stored) {
            let decoded = schemas::decode(
                &event.aggregate_type,
                &event.event_type,
                &event.event_version,
                event.payload.clone(),
            )
            .map_err(|e| RedisModelError::Event(event.event_id, e.to_string()))?;
            let payload = decoded.to_payload()?;
            let typed: A::Event = serde_json::from_value(payload)?;
            state.apply(typed);
            seq = event.sequence;
        }
        if seq == stored {
            return Ok(None);
        }
        let view = view(&state);
        let doc = json!({"state": state, "view": view});
        let mut connection = self.connection.clone();
        let _: i64 = self
            .write
            .key(format!("{}:{kind}:{id}", self.prefix))
            .arg(seq)
            .arg(doc.to_string())
            .invoke_async(&mut connection)
            .await?;
        Ok(Some(view))
    }

    async fn index_recent(&self, order_id: &str, view: &Value) -> Result<(), RedisModelError> {
        let (Some(customer), Some(placed_at)) =
            (view["customer"].as_str(), view["placed_at_ms"].as_i64())
        else {
            return Ok(());
        };
        let key = format!("{}:customer:{customer}:orders", self.prefix);
        let mut connection = self.connection.clone();
        redis::pipe()
            .cmd("ZADD")
            .arg(&key)
            .arg(placed_at)
            .arg(order_id)
            .ignore()
            .cmd("ZREMRANGEBYRANK")
            .arg(&key)
            .arg(0)
            .arg(-(RECENT_ORDERS + 1))
            .ignore()
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }
}

fn cart_view(cart: &Cart) -> Value {
    let totals = cart.totals().ok();
    json!({
        "owner": cart.owner(),
        "currency": cart.currency(),
        "lines": cart.lines(),
        "coupon": cart.coupon(),
        "totals": totals,
    })
}

fn product_view(product: &Product) -> Value {
    match product.details() {
        Some(details) => json!({
            "name": details.name,
            "description": details.description,
            "category": details.category,
            "price": details.price,
            "discontinued": product.is_discontinued(),
        }),
        None => Value::Null,
    }
}

fn order_view(order: &Order) -> Value {
    match order.placed() {
        Some(placed) => json!({
            "number": placed.order_number,
            "customer": placed.customer,
            "status": placed.status,
            "totals": placed.totals,
            "placed_at_ms": placed.placed_at.timestamp_millis(),
        }),
        None => Value::Null,
    }
}
