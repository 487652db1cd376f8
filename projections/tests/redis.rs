//! The Redis read models against the real Redis and PostgreSQL: carts, hot products and
//! customers' recent orders follow the log, replaying it changes nothing, and after a random
//! workload followed with crashes every key equals a model built fresh in one pass.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use domain::cart::CartOwner;
use domain::order::OrderLine;
use domain::{
    Address, CartCommand, CartId, Currency, CustomerId, Money, OrderCommand, OrderId, OrderNumber,
    PaymentId, ProductCommand, Quantity, Sku,
};
use eventlog::testing::TestDatabase;
use eventlog::{checkpoint, log, Actor, EventMetadata, LogPosition};
use projections::redis::{RedisReadModels, SUBSCRIPTION};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use schemas::stores::Stores;
use uuid::Uuid;

fn meta() -> EventMetadata {
    EventMetadata::new(Actor::system("test"))
}

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").unwrap())
}

async fn settle(db: &TestDatabase) {
    for _ in 0..250 {
        let settled: bool = sqlx::query_scalar(
            "SELECT coalesce(max(transaction_id) < pg_snapshot_xmin(pg_current_snapshot()), true) FROM events",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if settled {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn follow_all(models: &RedisReadModels, db: &TestDatabase) {
    // wait for the log's horizon, then drain
    settle(db).await;
    while models.follow(&db.pool, 3).await.unwrap() > 0 {}
}

async fn connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open("redis://127.0.0.1:6379")
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn keys_under(
    connection: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(connection)
        .await
        .unwrap()
}

/// Every key under `prefix` (the prefix cut off) with its whole contents.
async fn contents(prefix: &str) -> BTreeMap<String, String> {
    let mut connection = connection().await;
    let keys = keys_under(&mut connection, prefix).await;
    let mut all = BTreeMap::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .unwrap();
        let value = match kind.as_str() {
            "hash" => {
                let map: BTreeMap<String, String> = redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await
                    .unwrap();
                format!("{map:?}")
            }
            "zset" => {
                let ranked: Vec<(String, f64)> = redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(&mut connection)
                    .await
                    .unwrap();
                format!("{ranked:?}")
            }
            "set" => {
                let members: BTreeSet<String> = redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await
                    .unwrap();
                format!("{members:?}")
            }
            other => panic!("unexpected {other} at {key}"),
        };
        all.insert(key[prefix.len() + 1..].to_owned(), value);
    }
    all
}

async fn drop_keys(prefix: &str) {
    let mut connection = connection().await;
    let keys = keys_under(&mut connection, prefix).await;
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut connection)
            .await
            .unwrap();
    }
}

/// Follows to the head in random batch sizes; before some batches the projector "dies" having
/// written a random part of the batch but not its checkpoint.
async fn follow_with_crashes(models: &RedisReadModels, db: &TestDatabase, rng: &mut StdRng) -> u32 {
    settle(db).await;
    let mut crashes = 0;
    loop {
        let limit = rng.random_range(1..40);
        if rng.random_bool(0.25) {
            let position = checkpoint::load(&db.pool, SUBSCRIPTION).await.unwrap();
            let batch = log::read_batch_for(
                &db.pool,
                position,
                limit,
                &["cart", "product", "order"],
                log::Metadata::Skip,
            )
            .await
            .unwrap();
            let cut = rng.random_range(0..=batch.events.len());
            models.apply(&db.pool, &batch.events[..cut]).await.unwrap();
            crashes += 1;
        }
        if models.follow(&db.pool, limit).await.unwrap() == 0 {
            return crashes;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_random_workload_followed_with_crashes_every_key_equals_a_fresh_build() {
    let db = TestDatabase::create(eventlog::migrate::MIGRATIONS, 4).await;
    let stores = Stores::new(&db.pool);
    let prefix = format!("shop-test-{}:v1", Uuid::new_v4().simple());
    let models = RedisReadModels::connect("redis://127.0.0.1:6379", &prefix)
        .await
        .unwrap()
        .with_hot_products(3);
    let mut rng = StdRng::seed_from_u64(17);
    // writes and the follower take turns, so documents are folded across many batches
    let mut crashes = 0;
    for (phase, seed) in [21_u64, 22, 23].into_iter().enumerate() {
        common::random_workload(&stores, seed, 150 + 50 * phase).await;
        crashes += follow_with_crashes(&models, &db, &mut rng).await;
    }
    assert!(
        crashes > 5,
        "the run should have crashed a few times, not {crashes}"
    );

    let fresh_prefix = format!("shop-test-{}:v1", Uuid::new_v4().simple());
    let fresh = RedisReadModels::connect("redis://127.0.0.1:6379", &fresh_prefix)
        .await
        .unwrap()
        .with_hot_products(3);
    let everything = log::read_after(&db.pool, LogPosition::START, 1_000_000)
        .await
        .unwrap();
    fresh.apply(&db.pool, &everything).await.unwrap();

    let mut followed = contents(&prefix).await;
    let mut built = contents(&fresh_prefix).await;
    // the subscription's own bookkeeping (how far demand was counted), not a read model
    followed.remove("products:demand:position");
    built.remove("products:demand:position");
    let differing: Vec<&String> = followed
        .keys()
        .chain(built.keys())
        .filter(|key| followed.get(*key) != built.get(*key))
        .collect();
    assert!(
        differing.is_empty(),
        "{} keys differ from a fresh build, e.g. {:?}: followed {:?}, fresh {:?}",
        differing.len(),
        differing[0],
        followed.get(differing[0]),
        built.get(differing[0])
    );

    // the model is not trivially empty: every kind of key is there
    for kind in ["cart:", "order:", "product:", "customer:"] {
        assert!(
            followed.keys().any(|k| k.starts_with(kind)),
            "no {kind} key in {:?}",
            followed.keys().collect::<Vec<_>>()
        );
    }
    // demand is what the log says (units added to carts plus units ordered), counted once
    // whatever the crashes; documents exist for exactly the 3 most wanted products
    let mut demand: BTreeMap<String, f64> = BTreeMap::new();
    for event in &everything {
        match schemas::decode(
            &event.aggregate_type,
            &event.event_type,
            &event.event_version,
            event.payload.clone(),
        ) {
            Ok(schemas::AnyEvent::Cart(domain::CartEvent::ItemAdded { sku, quantity, .. })) => {
                *demand.entry(sku.to_string()).or_default() += f64::from(quantity.get());
            }
            Ok(schemas::AnyEvent::Order(domain::OrderEvent::OrderPlaced { lines, .. })) => {
                for line in lines {
                    *demand.entry(line.sku.to_string()).or_default() +=
                        f64::from(line.quantity.get());
                }
            }
            _ => {}
        }
    }
    let mut ranked: Vec<(String, f64)> = demand.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    ranked.truncate(3);
    assert_eq!(models.hot_products(10).await.unwrap(), ranked);
    let documented: BTreeSet<String> = followed
        .keys()
        .filter_map(|k| k.strip_prefix("product:"))
        .map(str::to_owned)
        .collect();
    let hot: BTreeSet<String> = ranked.into_iter().map(|(sku, _)| sku).collect();
    assert_eq!(documented, hot);

    drop_keys(&prefix).await;
    drop_keys(&fresh_prefix).await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carts_products_and_recent_orders_follow_the_log_and_replays_change_nothing() {
    let db = TestDatabase::create(eventlog::migrate::MIGRATIONS, 4).await;
    let stores = Stores::new(&db.pool);
    let prefix = format!("shop-test-{}:v1", Uuid::new_v4().simple());
    let models = RedisReadModels::connect("redis://127.0.0.1:6379", &prefix)
        .await
        .unwrap();

    let create = ProductCommand::Create {
        sku: Sku::parse("MUG-1").unwrap(),
        name: "Mug".into(),
        description: "A mug".into(),
        category: "home".into(),
        price: eur(1200),
        created_at: Utc::now(),
    };
    stores
        .products
        .execute("MUG-1", create, &meta())
        .await
        .unwrap();
    let cart = Uuid::new_v4().to_string();
    let customer = Uuid::new_v4();
    for command in [
        CartCommand::Create {
            owner: CartOwner::Customer(CustomerId::new(customer)),
            currency: Currency::parse("EUR").unwrap(),
            created_at: Utc::now(),
        },
        CartCommand::AddItem {
            sku: Sku::parse("MUG-1").unwrap(),
            quantity: Quantity::new(2).unwrap(),
            unit_price: eur(1200),
        },
        CartCommand::AddItem {
            sku: Sku::parse("MUG-1").unwrap(),
            quantity: Quantity::new(1).unwrap(),
            unit_price: eur(1200),
        },
    ] {
        stores.carts.execute(&cart, command, &meta()).await.unwrap();
    }
    let order = OrderId::new(Uuid::new_v4());
    let place = OrderCommand::Place {
        order_number: OrderNumber(1),
        customer: Some(CustomerId::new(customer)),
        cart_id: CartId::new(Uuid::new_v4()),
        lines: vec![OrderLine {
            sku: Sku::parse("MUG-1").unwrap(),
            name: "Mug".into(),
            quantity: Quantity::new(3).unwrap(),
            unit_price: eur(1200),
        }],
        currency: Currency::parse("EUR").unwrap(),
        discount: eur(0),
        tax: eur(0),
        shipping: eur(0),
        shipping_address: Address::new("A", "1 Main St", None, "Berlin", "10115", "DE").unwrap(),
        payment_method: "pm_card_visa".into(),
        placed_at: Utc::now(),
    };
    let id = order.to_string();
    stores.orders.execute(&id, place, &meta()).await.unwrap();
    stores
        .orders
        .execute(
            &id,
            OrderCommand::MarkStockReserved { at: Utc::now() },
            &meta(),
        )
        .await
        .unwrap();
    let confirm = OrderCommand::Confirm {
        payment_id: PaymentId::new(Uuid::new_v4()),
        at: Utc::now(),
    };
    stores.orders.execute(&id, confirm, &meta()).await.unwrap();

    follow_all(&models, &db).await;
    let (seq, cart_doc) = models
        .document("cart", &cart)
        .await
        .unwrap()
        .expect("a cart document");
    assert_eq!(seq, 3);
    assert_eq!(cart_doc["view"]["lines"][0]["quantity"], 3);
    assert_eq!(cart_doc["view"]["totals"]["total"]["amount_minor"], 3600);
    let (_, product) = models.document("product", "MUG-1").await.unwrap().unwrap();
    assert_eq!(product["view"]["name"], "Mug");
    let (order_seq, order_doc) = models.document("order", &id).await.unwrap().unwrap();
    assert_eq!(order_seq, 3);
    assert_eq!(order_doc["view"]["status"], "Confirmed");
    assert_eq!(
        models.recent_orders(&customer.to_string()).await.unwrap(),
        vec![id.clone()]
    );

    // a replay from the start (a crash before the checkpoint) changes nothing
    eventlog::checkpoint::reset(&db.pool, SUBSCRIPTION)
        .await
        .unwrap();
    assert_eq!(
        eventlog::checkpoint::load(&db.pool, SUBSCRIPTION)
            .await
            .unwrap(),
        LogPosition::START
    );
    follow_all(&models, &db).await;
    assert_eq!(
        models.document("cart", &cart).await.unwrap().unwrap(),
        (seq, cart_doc)
    );
    assert_eq!(
        models.document("order", &id).await.unwrap().unwrap(),
        (order_seq, order_doc)
    );
    assert_eq!(
        models
            .recent_orders(&customer.to_string())
            .await
            .unwrap()
            .len(),
        1
    );

    // later events still apply
    let remove = CartCommand::RemoveItem {
        sku: Sku::parse("MUG-1").unwrap(),
    };
    stores.carts.execute(&cart, remove, &meta()).await.unwrap();
    follow_all(&models, &db).await;
    let (seq, cart_doc) = models.document("cart", &cart).await.unwrap().unwrap();
    assert_eq!(seq, 4);
    assert_eq!(cart_doc["view"]["lines"].as_array().map(Vec::len), Some(0));

    // the same documents as a model built from scratch in one pass
    let fresh_prefix = format!("shop-test-{}:v1", Uuid::new_v4().simple());
    let fresh = RedisReadModels::connect("redis://127.0.0.1:6379", &fresh_prefix)
        .await
        .unwrap();
    let everything = eventlog::log::read_after(&db.pool, LogPosition::START, 10_000)
        .await
        .unwrap();
    fresh.apply(&db.pool, &everything).await.unwrap();
    for (kind, key) in [
        ("cart", cart.as_str()),
        ("product", "MUG-1"),
        ("order", id.as_str()),
    ] {
        assert_eq!(
            fresh.document(kind, key).await.unwrap(),
            models.document(kind, key).await.unwrap(),
            "{kind} {key}"
        );
    }
    assert_eq!(
        fresh.recent_orders(&customer.to_string()).await.unwrap(),
        models.recent_orders(&customer.to_string()).await.unwrap()
    );

    drop_keys(&prefix).await;
    drop_keys(&fresh_prefix).await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_or_stale_document_is_refolded_from_its_stream() {
    let db = TestDatabase::create(eventlog::migrate::MIGRATIONS, 4).await;
    let stores = Stores::new(&db.pool);
    let prefix = format!("shop-test-{}:v1", Uuid::new_v4().simple());
    let models = RedisReadModels::connect("redis://127.0.0.1:6379", &prefix)
        .await
        .unwrap();
    let sku = || Sku::parse("LAMP-1").unwrap();
    let create = ProductCommand::Create {
        sku: sku(),
        name: "Lamp".into(),
        description: "A lamp".into(),
        category: "home".into(),
        price: eur(3000),
        created_at: Utc::now(),
    };
    stores
        .products
        .execute("LAMP-1", create, &meta())
        .await
        .unwrap();
    let cart = Uuid::new_v4().to_string();
    let customer = Uuid::new_v4();
    for command in [
        CartCommand::Create {
            owner: CartOwner::Customer(CustomerId::new(customer)),
            currency: Currency::parse("EUR").unwrap(),
            created_at: Utc::now(),
        },
        CartCommand::AddItem {
            sku: sku(),
            quantity: Quantity::new(2).unwrap(),
            unit_price: eur(3000),
        },
    ] {
        stores.carts.execute(&cart, command, &meta()).await.unwrap();
    }
    let order = OrderId::new(Uuid::new_v4()).to_string();
    let place = OrderCommand::Place {
        order_number: OrderNumber(7),
        customer: Some(CustomerId::new(customer)),
        cart_id: CartId::new(Uuid::new_v4()),
        lines: vec![OrderLine {
            sku: sku(),
            name: "Lamp".into(),
            quantity: Quantity::new(1).unwrap(),
            unit_price: eur(3000),
        }],
        currency: Currency::parse("EUR").unwrap(),
        discount: eur(0),
        tax: eur(0),
        shipping: eur(0),
        shipping_address: Address::new("A", "1 Main St", None, "Berlin", "10115", "DE").unwrap(),
        payment_method: "pm_card_visa".into(),
        placed_at: Utc::now(),
    };
    stores.orders.execute(&order, place, &meta()).await.unwrap();
    follow_all(&models, &db).await;

    // the order's document as it stood after its first event (a Redis restored from an old
    // dump will hold such a state)
    let mut redis = connection().await;
    let order_key = format!("{prefix}:order:{order}");
    let old_order: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(&order_key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(old_order.contains(&("seq".to_owned(), "1".to_owned())));
    stores
        .orders
        .execute(
            &order,
            OrderCommand::MarkStockReserved { at: Utc::now() },
            &meta(),
        )
        .await
        .unwrap();
    follow_all(&models, &db).await;
    assert_eq!(
        models.document("order", &order).await.unwrap().unwrap().0,
        2
    );

    // eviction of the cart and the product, the order set back to an older state
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:cart:{cart}"))
        .arg(format!("{prefix}:product:LAMP-1"))
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut restore = redis::cmd("HSET");
    restore.arg(&order_key);
    for (field, value) in &old_order {
        restore.arg(field).arg(value);
    }
    let _: () = restore.query_async(&mut redis).await.unwrap();

    // later events of each stream
    let add = CartCommand::AddItem {
        sku: sku(),
        quantity: Quantity::new(1).unwrap(),
        unit_price: eur(3000),
    };
    stores.carts.execute(&cart, add, &meta()).await.unwrap();
    let reprice = ProductCommand::Reprice { price: eur(2500) };
    stores
        .products
        .execute("LAMP-1", reprice, &meta())
        .await
        .unwrap();
    let confirm = OrderCommand::Confirm {
        payment_id: PaymentId::new(Uuid::new_v4()),
        at: Utc::now(),
    };
    stores
        .orders
        .execute(&order, confirm, &meta())
        .await
        .unwrap();
    follow_all(&models, &db).await;

    // the same documents as a model built from scratch in one pass
    let fresh_prefix = format!("shop-test-{}:v1", Uuid::new_v4().simple());
    let fresh = RedisReadModels::connect("redis://127.0.0.1:6379", &fresh_prefix)
        .await
        .unwrap();
    let everything = log::read_after(&db.pool, LogPosition::START, 10_000)
        .await
        .unwrap();
    fresh.apply(&db.pool, &everything).await.unwrap();
    for (kind, key, sequence) in [
        ("cart", cart.as_str(), 3),
        ("product", "LAMP-1", 2),
        ("order", order.as_str(), 3),
    ] {
        let followed = models.document(kind, key).await.unwrap();
        assert_eq!(
            followed.as_ref().map(|d| d.0),
            Some(sequence),
            "{kind} {key}"
        );
        assert_eq!(
            followed,
            fresh.document(kind, key).await.unwrap(),
            "{kind} {key}"
        );
    }

    drop_keys(&prefix).await;
    drop_keys(&fresh_prefix).await;
    db.drop().await;
}
