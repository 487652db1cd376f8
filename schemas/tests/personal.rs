//! Personal fields sealed with per-subject keys, against the real PostgreSQL: what the events
//! table holds, what the domain and the read side see, erasure, the hash chain and anchors after
//! it, guests, events stored before sealing, and a wrong master key.

use std::sync::Arc;

use chrono::Utc;
use domain::cart::{CartCommand, CartLine, CartOwner};
use domain::order::{OrderCommand, OrderLine};
use domain::{Address, CartId, Currency, CustomerId, Money, OrderId, OrderNumber, Quantity, Sku};
use eventlog::testing::TestDatabase;
use eventlog::EventMetadata;
use schemas::personal::{Keyring, KeyringError, MasterKey, Subject, ERASED, REDACTED};
use schemas::stores::Stores;
use schemas::AnyEvent;
use sqlx::PgPool;
use uuid::Uuid;

const NAME: &str = "Philippa Quartermain";
const STREET: &str = "17 Larkspur Crescent";

async fn database() -> TestDatabase {
    TestDatabase::create(
        eventlog::migrate::MIGRATIONS
            .iter()
            .chain(schemas::personal::MIGRATIONS),
        4,
    )
    .await
}

async fn keyring(pool: &PgPool) -> (Arc<Keyring>, String) {
    let (master, hex) = MasterKey::generate().unwrap();
    (
        Arc::new(Keyring::open(pool.clone(), master).await.unwrap()),
        hex,
    )
}

fn address() -> Address {
    Address::new(NAME, STREET, Some("Flat 3".into()), "Bath", "BA1 2QH", "GB").unwrap()
}

fn eur() -> Currency {
    Currency::parse("EUR").unwrap()
}

fn line() -> CartLine {
    CartLine {
        sku: Sku::parse("MUG-1").unwrap(),
        quantity: Quantity::new(2).unwrap(),
        unit_price: Money::new(1200, eur()),
    }
}

/// A cart of `owner` checked out, and its order placed: the order id.
async fn checkout(stores: &Stores, owner: CartOwner) -> (CartId, OrderId) {
    let cart_id = CartId::new(Uuid::new_v4());
    let order_id = OrderId::new(Uuid::new_v4());
    let metadata = || EventMetadata::new(eventlog::Actor::system("test"));
    let cart = cart_id.to_string();
    for command in [
        CartCommand::Create {
            owner,
            currency: eur(),
            created_at: Utc::now(),
        },
        CartCommand::AddItem {
            sku: line().sku,
            quantity: line().quantity,
            unit_price: line().unit_price,
        },
        CartCommand::CheckOut {
            order_id,
            priced_lines: vec![line()],
            shipping_address: address(),
            payment_method: "pm_card_visa".into(),
            checked_out_at: Utc::now(),
        },
    ] {
        stores
            .carts
            .execute(&cart, command, &metadata())
            .await
            .unwrap();
    }
    let customer = match owner {
        CartOwner::Customer(customer) => Some(customer),
        CartOwner::Guest => None,
    };
    stores
        .orders
        .execute(
            &order_id.to_string(),
            OrderCommand::Place {
                order_number: OrderNumber(1),
                customer,
                cart_id,
                lines: vec![OrderLine {
                    sku: line().sku,
                    name: "Mug".into(),
                    quantity: line().quantity,
                    unit_price: line().unit_price,
                }],
                currency: eur(),
                discount: Money::zero(eur()),
                tax: Money::zero(eur()),
                shipping: Money::zero(eur()),
                shipping_address: address(),
                payment_method: "pm_card_visa".into(),
                placed_at: Utc::now(),
            },
            &metadata(),
        )
        .await
        .unwrap();
    (cart_id, order_id)
}

/// Every stored payload as PostgreSQL prints it.
async fn stored_text(pool: &PgPool) -> String {
    let payloads: Vec<String> = sqlx::query_scalar("SELECT payload::text FROM events")
        .fetch_all(pool)
        .await
        .unwrap();
    payloads.join("\n")
}

/// The order's shipping address as a fresh store (with `keyring`) loads it.
async fn loaded_address(pool: &PgPool, keyring: &Arc<Keyring>, order: OrderId) -> Address {
    let stores = Stores::sealed(pool, keyring.clone());
    let loaded = stores.orders.load(&order.to_string()).await.unwrap();
    loaded.aggregate.placed().unwrap().shipping_address.clone()
}

/// The stored events of one stream, as readers get them.
async fn stream(pool: &PgPool, aggregate_type: &str, id: &str) -> Vec<eventlog::RecordedEvent> {
    eventlog::log::read_stream(pool, aggregate_type, id)
        .await
        .unwrap()
}

/// The order's `OrderPlaced` as the log gives it to readers.
async fn placed_event(pool: &PgPool, order: OrderId) -> eventlog::RecordedEvent {
    stream(pool, "order", &order.to_string())
        .await
        .into_iter()
        .find(|e| e.event_type == "OrderPlaced")
        .unwrap()
}

fn shipping_address(event: AnyEvent) -> Address {
    match event {
        AnyEvent::Order(domain::OrderEvent::OrderPlaced {
            shipping_address, ..
        }) => shipping_address,
        other => panic!("not an OrderPlaced: {other:?}"),
    }
}

#[tokio::test]
async fn sealed_fields_are_ciphertext_in_the_log_plaintext_to_the_domain_redacted_to_read_models() {
    let db = database().await;
    let (keyring, _) = keyring(&db.pool).await;
    let stores = Stores::sealed(&db.pool, keyring.clone());
    let customer = CustomerId::new(Uuid::new_v4());
    let (_, order) = checkout(&stores, CartOwner::Customer(customer)).await;

    let stored = stored_text(&db.pool).await;
    for secret in [NAME, STREET, "Bath", "BA1 2QH", "Flat 3"] {
        assert!(!stored.contains(secret), "{secret} stored in plaintext");
    }
    assert_eq!(
        stored.matches("\"sealed\"").count(),
        2,
        "cart and order sealed"
    );
    assert!(stored.contains("\"GB\""), "the country stays in clear");

    // the domain, through a store that did not write it (no cache), sees the plaintext
    assert_eq!(loaded_address(&db.pool, &keyring, order).await, address());
    // a reader with the keyring too; a read model (no keys) sees the placeholder
    let event = placed_event(&db.pool, order).await;
    assert_eq!(
        shipping_address(keyring.decode(&event).await.unwrap()),
        address()
    );
    let redacted = shipping_address(
        schemas::decode_ref(
            &event.aggregate_type,
            &event.event_type,
            &event.event_version,
            &event.payload,
        )
        .unwrap(),
    );
    assert_eq!(redacted.name(), REDACTED);
    assert_eq!(redacted.line1(), REDACTED);
    assert_eq!(redacted.line2(), None);
    assert_eq!(redacted.country().as_str(), "GB");

    // one key for the customer, wrapped: its bytes are not the key in the clear
    let subjects: Vec<String> = sqlx::query_scalar("SELECT subject FROM data_keys")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(subjects, vec![Subject::Customer(customer).name()]);
    db.drop().await;
}

#[tokio::test]
async fn erasure_leaves_the_chain_and_anchors_verifying_and_every_read_erased() {
    let db = database().await;
    let (keyring, _) = keyring(&db.pool).await;
    let stores = Stores::sealed(&db.pool, keyring.clone());
    let customer = CustomerId::new(Uuid::new_v4());
    let other = CustomerId::new(Uuid::new_v4());
    let (_, order) = checkout(&stores, CartOwner::Customer(customer)).await;
    let (_, others_order) = checkout(&stores, CartOwner::Customer(other)).await;
    let anchor_key = eventlog::anchor::AnchorKey::new(vec![7u8; 32]).unwrap();
    let anchor = eventlog::anchor::create(&db.pool, &anchor_key, |_, _| {})
        .await
        .unwrap();
    let before = stored_text(&db.pool).await;

    let erasure = keyring.erase(&Subject::Customer(customer)).await.unwrap();
    assert!(erasure.key_destroyed);
    let again = keyring.erase(&Subject::Customer(customer)).await.unwrap();
    assert!(!again.key_destroyed, "erasure is idempotent");

    // the log is untouched: same bytes, chains and anchor hold
    assert_eq!(stored_text(&db.pool).await, before);
    assert!(eventlog::audit::verify_all(&db.pool, |_| {})
        .await
        .unwrap()
        .is_intact());
    assert!(
        eventlog::anchor::verify(&db.pool, &anchor, &anchor_key, |_| {})
            .await
            .unwrap()
            .holds()
    );

    // the key is gone from the table; every keyed read shows the placeholder, without an error,
    // also in a process that never saw the key (a fresh keyring on the same master key)
    let wrapped: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT wrapped_key FROM data_keys WHERE subject = $1")
            .bind(Subject::Customer(customer).name())
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(wrapped, None);
    let erased = loaded_address(&db.pool, &keyring, order).await;
    assert_eq!((erased.name(), erased.line1()), (ERASED, ERASED));
    assert_eq!(erased.country().as_str(), "GB");
    let event = placed_event(&db.pool, order).await;
    assert_eq!(
        shipping_address(keyring.decode(&event).await.unwrap()).name(),
        ERASED
    );
    // the other customer's data is untouched
    assert_eq!(
        loaded_address(&db.pool, &keyring, others_order).await,
        address()
    );

    // nothing new of an erased customer is stored (a checkout in flight when they were erased)
    let mut late = serde_json::json!({"OrderPlaced": {"customer": customer.to_string(),
        "shipping_address": {"name": "x", "line1": "y", "city": "z",
                             "postal_code": "1", "country": "DE"}}});
    keyring
        .seal(
            "order",
            &Uuid::new_v4().to_string(),
            "OrderPlaced",
            &mut late,
        )
        .await
        .unwrap();
    assert_eq!(
        late["OrderPlaced"]["shipping_address"],
        serde_json::json!({"name": ERASED, "line1": ERASED, "line2": null, "city": ERASED,
                           "postal_code": ERASED, "country": "DE"})
    );
    db.drop().await;
}

#[tokio::test]
async fn a_guest_checkout_has_a_key_of_its_own_shared_by_its_cart_and_order() {
    let db = database().await;
    let (keyring, _) = keyring(&db.pool).await;
    let stores = Stores::sealed(&db.pool, keyring.clone());
    let (cart, order) = checkout(&stores, CartOwner::Guest).await;
    let (_, second) = checkout(&stores, CartOwner::Guest).await;
    let subjects: Vec<String> = sqlx::query_scalar("SELECT subject FROM data_keys ORDER BY 1")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let mut expected = vec![
        Subject::GuestOrder(order).name(),
        Subject::GuestOrder(second).name(),
    ];
    expected.sort();
    assert_eq!(subjects, expected);
    keyring.erase(&Subject::GuestOrder(order)).await.unwrap();
    assert_eq!(
        loaded_address(&db.pool, &keyring, order).await.name(),
        ERASED
    );
    assert_eq!(loaded_address(&db.pool, &keyring, second).await, address());
    // the erased guest's cart check-out too
    let events = stream(&db.pool, "cart", &cart.to_string()).await;
    let checked_out = events
        .iter()
        .find(|e| e.event_type == "CartCheckedOut")
        .unwrap();
    match keyring.decode(checked_out).await.unwrap() {
        AnyEvent::Cart(domain::CartEvent::CartCheckedOut {
            shipping_address, ..
        }) => assert_eq!(shipping_address.name(), ERASED),
        other => panic!("{other:?}"),
    }
    db.drop().await;
}

#[tokio::test]
async fn events_stored_before_sealing_load_as_they_are_and_are_redacted_once_erased() {
    let db = database().await;
    let customer = CustomerId::new(Uuid::new_v4());
    // written by a shop without a master key: plaintext
    let (_, order) = checkout(&Stores::new(&db.pool), CartOwner::Customer(customer)).await;
    assert!(stored_text(&db.pool).await.contains(NAME));
    let (keyring, _) = keyring(&db.pool).await;
    assert_eq!(loaded_address(&db.pool, &keyring, order).await, address());
    assert_eq!(keyring.plaintext_events_of(customer).await.unwrap(), 1);
    keyring.erase(&Subject::Customer(customer)).await.unwrap();
    assert_eq!(
        loaded_address(&db.pool, &keyring, order).await.name(),
        ERASED
    );
    // read models never showed it
    let event = placed_event(&db.pool, order).await;
    let redacted = shipping_address(
        schemas::decode(
            &event.aggregate_type,
            &event.event_type,
            &event.event_version,
            event.payload.clone(),
        )
        .unwrap(),
    );
    assert_eq!(redacted.name(), REDACTED);
    db.drop().await;
}

#[tokio::test]
async fn a_wrong_master_key_is_refused_at_once_and_by_name() {
    let db = database().await;
    let (keyring, _) = keyring(&db.pool).await;
    let stores = Stores::sealed(&db.pool, keyring.clone());
    checkout(
        &stores,
        CartOwner::Customer(CustomerId::new(Uuid::new_v4())),
    )
    .await;
    let (wrong, _) = MasterKey::generate().unwrap();
    let error = Keyring::open(db.pool.clone(), wrong).await.unwrap_err();
    assert!(matches!(error, KeyringError::WrongMasterKey), "{error}");
    assert!(error.to_string().contains("SHOP_DATA_KEY_MASTER"));
    db.drop().await;
}

#[tokio::test]
async fn concurrent_first_seals_of_one_customer_share_one_key() {
    let db = database().await;
    let (keyring, _) = keyring(&db.pool).await;
    let customer = CustomerId::new(Uuid::new_v4());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let stores = Stores::sealed(&db.pool, keyring.clone());
        tasks.push(tokio::spawn(async move {
            checkout(&stores, CartOwner::Customer(customer)).await.1
        }));
    }
    let mut orders = Vec::new();
    for task in tasks {
        orders.push(task.await.unwrap());
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM data_keys")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
    for order in orders {
        assert_eq!(loaded_address(&db.pool, &keyring, order).await, address());
    }
    db.drop().await;
}

#[tokio::test]
async fn a_cart_checkout_is_redacted_for_read_models_but_not_for_the_saga() {
    let db = database().await;
    let (keyring, _) = keyring(&db.pool).await;
    let stores = Stores::sealed(&db.pool, keyring.clone());
    let (cart, _) = checkout(
        &stores,
        CartOwner::Customer(CustomerId::new(Uuid::new_v4())),
    )
    .await;
    let events = stream(&db.pool, "cart", &cart.to_string()).await;
    let checked_out = events
        .iter()
        .find(|e| e.event_type == "CartCheckedOut")
        .unwrap();
    let address_of = |event: AnyEvent| match event {
        AnyEvent::Cart(domain::CartEvent::CartCheckedOut {
            shipping_address, ..
        }) => shipping_address,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        address_of(stores.decode_personal(checked_out).await.unwrap()),
        address()
    );
    let for_read_models = schemas::decode_ref(
        &checked_out.aggregate_type,
        &checked_out.event_type,
        &checked_out.event_version,
        &checked_out.payload,
    )
    .unwrap();
    assert_eq!(address_of(for_read_models).name(), REDACTED);
    db.drop().await;
}
