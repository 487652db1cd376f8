//! The Redis read models against the real Redis and PostgreSQL: carts, products and customers'
//! recent orders follow the log, and replaying it changes nothing.

use chrono::Utc;
use domain::cart::CartOwner;
use domain::order::OrderLine;
use domain::{
    Address, CartCommand, CartId, Currency, CustomerId, Money, OrderCommand, OrderId, OrderNumber,
    PaymentId, ProductCommand, Quantity, Sku,
};
use eventlog::testing::TestDatabase;
use eventlog::{Actor, EventMetadata, LogPosition};
use projections::redis::{RedisReadModels, SUBSCRIPTION};
use schemas::stores::Stores;
use uuid::Uuid;

fn meta() -> EventMetadata {
    EventMetadata::new(Actor::system("test"))
}

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").unwrap())
}

async fn follow_all(models: &RedisReadModels, db: &TestDatabase) {
    // wait for the log's horizon, then drain
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
    while models.follow(&db.pool, 3).await.unwrap() > 0 {}
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
    fresh.apply(&everything).await.unwrap();
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

    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    for prefix in [prefix, fresh_prefix] {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut connection)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut connection)
                .await
                .unwrap();
        }
    }
    db.drop().await;
}
