//! Redis read models: what the storefront reads on every page view — carts (lines, totals,
//! coupon), the documents of the hot products, and each customer's recent orders. Keys are
//! namespaced and versioned (`shop:v1:...`). At least once with idempotent writes: every document
//! carries the sequence of the last event folded into it, and a Lua script writes only a newer
//! one, so a replay after a crash changes nothing. The checkpoint (`redis:v1`) is saved after the
//! writes. A document is never folded across a gap: when a stream's next event does not follow
//! the stored sequence (Redis lost the key, or came back from an older dump), the document is
//! refolded from the stream in the event store.
//!
//! **Hot products.** Only the [`HOT_PRODUCTS`] most wanted products keep a document (the long
//! tail is read from PostgreSQL). Demand per SKU (`products:demand`, a sorted set) counts the
//! units added to carts and the units ordered; a batch's increments and the log position they
//! reach are written by one script that refuses a position already counted, so demand is
//! counted exactly once even though batches are replayed. After each batch the hot set
//! (`products:hot`) is the top of the demand ranking (ties by SKU): a product that enters it
//! gets its document folded from its stream, one that leaves loses it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cqrs_es::Aggregate;
use domain::{Cart, CartEvent, Order, OrderEvent, Product};
use eventlog::{checkpoint, log, LogPosition, RecordedEvent};
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
/// The advisory lock the follower holds per batch.
const FOLLOWER_LOCK: i64 = 7_300_010;
/// How many products keep a document: the most wanted ones.
pub const HOT_PRODUCTS: usize = 1_000;

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

/// Adds demand for the events after the stored log position (KEYS[2]) and moves it to the
/// batch's last position. ARGV: that position's `xid`, `position`, then per counted event its
/// `xid`, `position`, SKU and units. Events at or before the stored position were counted by an
/// earlier run of the batch (or of a part of it) and are skipped.
const COUNT_DEMAND: &str = r"
local stored = redis.call('HMGET', KEYS[2], 'xid', 'pos')
local xid, pos = tonumber(stored[1] or '-1'), tonumber(stored[2] or '-1')
local function after(x, p) return x > xid or (x == xid and p > pos) end
for i = 3, #ARGV, 4 do
  if after(tonumber(ARGV[i]), tonumber(ARGV[i + 1])) then
    redis.call('ZINCRBY', KEYS[1], ARGV[i + 3], ARGV[i + 2])
  end
end
if after(tonumber(ARGV[1]), tonumber(ARGV[2])) then
  redis.call('HSET', KEYS[2], 'xid', ARGV[1], 'pos', ARGV[2])
end
return 1";

/// Writes `doc` under `key` only if its `seq` is newer than the stored one.
const WRITE_IF_NEWER: &str = r"
local stored = redis.call('HGET', KEYS[1], 'seq')
if stored and tonumber(stored) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'doc', ARGV[2])
return 1";

pub struct RedisReadModels {
    connection: ConnectionManager,
    write: redis::Script,
    count_demand: redis::Script,
    prefix: String,
    hot_products: usize,
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
            count_demand: redis::Script::new(COUNT_DEMAND),
            prefix: prefix.to_owned(),
            hot_products: HOT_PRODUCTS,
        })
    }

    /// Keeps documents for the `n` most wanted products instead of [`HOT_PRODUCTS`].
    pub fn with_hot_products(mut self, n: usize) -> Self {
        self.hot_products = n.max(1);
        self
    }

    fn demand_key(&self) -> String {
        format!("{}:products:demand", self.prefix)
    }

    fn hot_key(&self) -> String {
        format!("{}:products:hot", self.prefix)
    }

    /// The hot products, most wanted first, with their demand (units added to carts and
    /// ordered).
    pub async fn hot_products(&self, limit: usize) -> Result<Vec<(String, f64)>, RedisModelError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut connection = self.connection.clone();
        let ranked: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(self.demand_key())
            .arg(0)
            .arg(limit.min(self.hot_products) as isize - 1)
            .arg("REV")
            .arg("WITHSCORES")
            .query_async(&mut connection)
            .await?;
        Ok(ranked)
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
    ///
    /// One follower at a time (several projector processes may run): each batch holds a
    /// transaction-scoped advisory lock, so batches never overlap — the hot set's documents are
    /// deleted and refolded by one writer — and a follower that stops mid-batch releases it.
    pub async fn follow(&self, pool: &PgPool, limit: i64) -> Result<usize, RedisModelError> {
        let mut turn = pool.begin().await.map_err(eventlog::Error::from)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(FOLLOWER_LOCK)
            .execute(&mut *turn)
            .await
            .map_err(eventlog::Error::from)?;
        let position = checkpoint::load(&mut *turn, SUBSCRIPTION).await?;
        let batch = log::read_batch_for(
            pool,
            position,
            limit,
            &["cart", "product", "order"],
            eventlog::log::Metadata::Skip,
        )
        .await?;
        let Some(last) = batch.last else {
            return Ok(0);
        };
        self.apply(pool, &batch.events).await?;
        checkpoint::save(&mut *turn, SUBSCRIPTION, last).await?;
        turn.commit().await.map_err(eventlog::Error::from)?;
        Ok(batch.scanned)
    }

    /// Folds a batch (in log order) into the documents it touches, one read and one guarded
    /// write per stream; counts its demand and moves the hot set (reading the streams of
    /// products that became hot from `pool`).
    pub async fn apply(
        &self,
        pool: &PgPool,
        events: &[RecordedEvent],
    ) -> Result<(), RedisModelError> {
        let hot = if self.count(events).await? {
            self.rank(pool).await?
        } else {
            self.hot_set().await?
        };
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
                    self.fold::<Cart>(pool, kind, id, &events, cart_view)
                        .await?;
                }
                "product" => {
                    if hot.contains(id) {
                        self.fold::<Product>(pool, kind, id, &events, product_view)
                            .await?;
                    }
                }
                _ => {
                    if let Some(view) = self
                        .fold::<Order>(pool, kind, id, &events, order_view)
                        .await?
                    {
                        self.index_recent(id, &view).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Counts the demand in `events` unless already counted; whether the batch had any.
    async fn count(&self, events: &[RecordedEvent]) -> Result<bool, RedisModelError> {
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(false);
        };
        let mut demand: Vec<(LogPosition, String, u64)> = Vec::new();
        for event in events {
            let wanted = matches!(
                (event.aggregate_type.as_str(), event.event_type.as_str()),
                ("cart", "ItemAdded") | ("order", "OrderPlaced")
            );
            if !wanted {
                continue;
            }
            match decode(event)? {
                schemas::AnyEvent::Cart(CartEvent::ItemAdded { sku, quantity, .. }) => {
                    demand.push((event.position, sku.to_string(), u64::from(quantity.get())));
                }
                schemas::AnyEvent::Order(OrderEvent::OrderPlaced { lines, .. }) => {
                    for line in lines {
                        let units = u64::from(line.quantity.get());
                        demand.push((event.position, line.sku.to_string(), units));
                    }
                }
                _ => {}
            }
        }
        if demand.is_empty() {
            return Ok(false);
        }
        let LogPosition {
            transaction_id,
            global_position,
        } = last;
        let mut invocation = self.count_demand.prepare_invoke();
        invocation
            .key(self.demand_key())
            .key(format!("{}:products:demand:position", self.prefix))
            .arg(transaction_id)
            .arg(global_position);
        for (position, sku, units) in &demand {
            invocation
                .arg(position.transaction_id)
                .arg(position.global_position)
                .arg(sku)
                .arg(units);
        }
        let mut connection = self.connection.clone();
        // a replayed batch counts nothing again, but the ranking is still redone (the process
        // may have stopped between counting and ranking)
        let _: i64 = invocation.invoke_async(&mut connection).await?;
        Ok(true)
    }

    /// The hot products' documents (their `view`), most wanted first, with their demand;
    /// SKUs wanted but not in the catalog (no product events) are left out.
    pub async fn popular_products(
        &self,
        limit: usize,
    ) -> Result<Vec<(String, f64, Value)>, RedisModelError> {
        let ranked = self.hot_products(limit).await?;
        if ranked.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (sku, _) in &ranked {
            pipe.cmd("HGET")
                .arg(format!("{}:product:{sku}", self.prefix))
                .arg("doc");
        }
        let mut connection = self.connection.clone();
        let documents: Vec<Option<String>> = pipe.query_async(&mut connection).await?;
        let mut popular = Vec::with_capacity(ranked.len());
        for ((sku, demand), document) in ranked.into_iter().zip(documents) {
            let Some(document) = document else { continue };
            let mut document: Value = serde_json::from_str(&document)?;
            let view = document["view"].take();
            if !view.is_null() {
                popular.push((sku, demand, view));
            }
        }
        Ok(popular)
    }

    async fn hot_set(&self) -> Result<BTreeSet<String>, RedisModelError> {
        let mut connection = self.connection.clone();
        Ok(redis::cmd("SMEMBERS")
            .arg(self.hot_key())
            .query_async(&mut connection)
            .await?)
    }

    /// Makes the hot set the top of the demand ranking: documents for the products that
    /// entered it (folded from their streams), none for those that left.
    async fn rank(&self, pool: &PgPool) -> Result<BTreeSet<String>, RedisModelError> {
        let top: BTreeSet<String> = self
            .hot_products(self.hot_products)
            .await?
            .into_iter()
            .map(|(sku, _)| sku)
            .collect();
        let before = self.hot_set().await?;
        let mut connection = self.connection.clone();
        for sku in top.difference(&before) {
            let stream = log::read_stream(pool, "product", sku).await?;
            let events: Vec<&RecordedEvent> = stream.iter().collect();
            self.fold::<Product>(pool, "product", sku, &events, product_view)
                .await?;
        }
        let left: Vec<&String> = before.difference(&top).collect();
        let entered: Vec<&String> = top.difference(&before).collect();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for sku in &left {
            pipe.cmd("DEL")
                .arg(format!("{}:product:{sku}", self.prefix))
                .ignore();
            pipe.cmd("SREM").arg(self.hot_key()).arg(*sku).ignore();
        }
        for sku in &entered {
            pipe.cmd("SADD").arg(self.hot_key()).arg(*sku).ignore();
        }
        if !left.is_empty() || !entered.is_empty() {
            pipe.query_async::<()>(&mut connection).await?;
        }
        Ok(top)
    }

    /// Folds `events` into the stored aggregate state of one stream and writes the document if
    /// it moved forward; the new view when written.
    ///
    /// The first new event must follow the stored document's sequence. When it does not (a
    /// missing document and an event after the first, or a document older than the batch's
    /// events: Redis restarted without its data, evicted the key, or was restored from an old
    /// dump), folding onto it would keep it wrong for good, so the document is refolded from its
    /// stream in the event store, up to the batch's last event of that stream.
    async fn fold<A>(
        &self,
        pool: &PgPool,
        kind: &str,
        id: &str,
        events: &[&RecordedEvent],
        view: fn(&A) -> Value,
    ) -> Result<Option<Value>, RedisModelError>
    where
        A: Aggregate + Serialize + DeserializeOwned,
    {
        let (stored, mut state) = match self.document(kind, id).await? {
            Some((seq, doc)) => (seq, serde_json::from_value::<A>(doc["state"].clone())?),
            None => (0, A::default()),
        };
        let mut new: Vec<&RecordedEvent> = events
            .iter()
            .copied()
            .filter(|e| e.sequence > stored)
            .collect();
        let (Some(first), Some(last)) = (new.first(), new.last()) else {
            return Ok(None); // a replay: nothing newer than the document
        };
        let stream;
        if first.sequence != stored + 1 {
            tracing::warn!(
                kind,
                id,
                stored,
                next = first.sequence,
                "document behind its stream (evicted or restored): refolded from the stream"
            );
            let upto = last.sequence;
            stream = log::read_stream(pool, kind, id).await?;
            new = stream.iter().filter(|e| e.sequence <= upto).collect();
            state = A::default();
        }
        let mut seq = stored;
        for event in new {
            let decoded = decode(event)?;
            let payload = decoded.to_payload()?;
            let typed: A::Event = serde_json::from_value(payload)?;
            state.apply(typed);
            seq = event.sequence;
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

fn decode(event: &RecordedEvent) -> Result<schemas::AnyEvent, RedisModelError> {
    schemas::decode_ref(
        &event.aggregate_type,
        &event.event_type,
        &event.event_version,
        &event.payload,
    )
    .map_err(|e| RedisModelError::Event(event.event_id, e.to_string()))
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
