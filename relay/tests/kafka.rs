//! The relay and the Kafka source against a real Kafka-protocol broker (nisshi on PostgreSQL,
//! one broker per test on its own port and database, started and stopped by the test): every
//! event arrives once per key in stream order after dedup; a broker restart mid-stream loses
//! nothing; a projection fed from Kafka equals the one fed from PostgreSQL, a redelivery changes
//! nothing, and a poison message goes to the dead-letter topic while the consumer moves on.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::{Currency, InventoryCommand, Money, OrderId, ProductCommand, Quantity, Sku};
use eventlog::source::EventSource;
use eventlog::testing::TestDatabase;
use eventlog::{Actor, EventMetadata};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use relay::testing::Broker;
use relay::{KafkaProjection, KafkaSource, Relay, RelayConfig, SourceConfig, DEAD_LETTER_TOPIC};
use schemas::stores::Stores;
use uuid::Uuid;

fn meta() -> EventMetadata {
    EventMetadata::new(Actor::system("test"))
}

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").unwrap())
}

/// Products and a random mix of stock movements on them; the number of events written.
async fn workload(stores: &Stores, seed: u64, skus: &[String], rounds: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    for sku in skus {
        let create = ProductCommand::Create {
            sku: Sku::parse(sku.clone()).unwrap(),
            name: format!("Product {sku}"),
            description: "d".into(),
            category: "kafka".into(),
            price: eur(1_000),
            created_at: Utc::now(),
        };
        let _ = stores.products.execute(sku, create, &meta()).await;
    }
    let mut reserved: Vec<(String, OrderId)> = Vec::new();
    for _ in 0..rounds {
        let sku = skus[rng.random_range(0..skus.len())].clone();
        let command = match rng.random_range(0..4) {
            0 => InventoryCommand::ReceiveStock {
                sku: Sku::parse(sku.clone()).unwrap(),
                quantity: Quantity::new(rng.random_range(1..10)).unwrap(),
            },
            1 | 2 => {
                let order = OrderId::new(Uuid::new_v4());
                reserved.push((sku.clone(), order));
                InventoryCommand::Reserve {
                    order_id: order,
                    quantity: Quantity::new(1).unwrap(),
                    expires_at: Utc::now() + chrono::Duration::minutes(10),
                }
            }
            _ => match reserved.pop() {
                Some((sku, order)) => {
                    let release = InventoryCommand::ReleaseReservation {
                        order_id: order,
                        reason: "cancelled".into(),
                    };
                    let _ = stores.inventory.execute(&sku, release, &meta()).await;
                    continue;
                }
                None => continue,
            },
        };
        let _ = stores.inventory.execute(&sku, command, &meta()).await;
    }
}

async fn relay_all(relay: &Relay) {
    // the gap-safe reader can be held back for a moment by other tests' open transactions
    // (and a broker that just restarted refuses for a moment: retried, as `Relay::run` does)
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet = 0;
    while quiet < 3 {
        quiet = match relay.step().await {
            Ok(0) => quiet + 1,
            Ok(_) => 0,
            Err(error) => {
                assert!(Instant::now() < deadline, "the relay kept failing: {error}");
                0
            }
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn database() -> TestDatabase {
    TestDatabase::create(
        eventlog::migrate::MIGRATIONS
            .iter()
            .chain(relay::MIGRATIONS),
        8,
    )
    .await
}

fn config(broker: &Broker) -> RelayConfig {
    RelayConfig {
        partitions: 3,
        delivery_timeout: Duration::from_secs(3),
        ..RelayConfig::new(broker.brokers())
    }
}

/// Every delivery of `types` from the start, for a fresh group, until quiet for 3 s.
async fn consume_all(broker: &Broker, types: &[&str]) -> Vec<eventlog::RecordedEvent> {
    let mut source = KafkaSource::new(&SourceConfig {
        brokers: broker.brokers(),
        group: format!("check-{}", Uuid::new_v4().simple()),
        aggregate_types: types.iter().map(|t| (*t).to_owned()).collect(),
        poll: Duration::from_secs(3),
    })
    .unwrap();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let batch = source.next_batch(500).await.unwrap();
        if batch.is_empty() && !events.is_empty() {
            return events;
        }
        assert!(Instant::now() < deadline, "no messages arrived");
        events.extend(batch.into_iter().map(|incoming| incoming.unwrap()));
    }
}

#[tokio::test]
async fn every_event_arrives_once_per_key_in_order_even_across_a_broker_restart() {
    let db = database().await;
    let mut broker = Broker::start(&db).await;
    let stores = Stores::new(&db.pool);
    let relay = Relay::new(db.pool.clone(), config(&broker)).unwrap();
    relay.ensure_topics().await.unwrap();
    let skus: Vec<String> = (0..6).map(|n| format!("KAF-{n}")).collect();
    workload(&stores, 1, &skus, 150).await;
    relay_all(&relay).await;

    // the broker goes away mid-stream: the relay fails, keeps its checkpoint, loses nothing
    broker.stop();
    workload(&stores, 2, &skus, 100).await;
    let before = eventlog::checkpoint::load(&db.pool, "kafka:relay")
        .await
        .unwrap();
    assert!(
        relay.step().await.is_err(),
        "publishing to a stopped broker must fail"
    );
    assert_eq!(
        eventlog::checkpoint::load(&db.pool, "kafka:relay")
            .await
            .unwrap(),
        before
    );
    broker.resume();
    relay_all(&relay).await;

    // `Relay::run` reports an unreachable broker (readiness) and recovers with it
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let running = {
        let relay = Relay::new(db.pool.clone(), config(&broker)).unwrap();
        tokio::spawn(async move { relay.run(stop).await })
    };
    broker.stop();
    workload(&stores, 5, &skus, 10).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while relay::broker_reachable() {
        assert!(
            Instant::now() < deadline,
            "the relay never noticed the broker was down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    broker.resume();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !relay::broker_reachable() {
        assert!(Instant::now() < deadline, "the relay never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_tx.send(true).unwrap();
    running.await.unwrap().unwrap();
    relay_all(&relay).await;

    let delivered = consume_all(&broker, &["product", "inventory"]).await;
    let stored: Vec<(Uuid, String, String, i64)> = sqlx::query_as(
        "SELECT event_id, aggregate_type, aggregate_id, sequence FROM events ORDER BY global_position",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    // after dedup by event id: exactly the stored events, each stream in sequence order
    let mut seen = HashSet::new();
    let mut streams: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    for event in &delivered {
        if seen.insert(event.event_id) {
            streams
                .entry((event.aggregate_type.clone(), event.aggregate_id.clone()))
                .or_default()
                .push(event.sequence);
        }
    }
    assert_eq!(seen.len(), stored.len(), "every stored event, once");
    for (id, ..) in &stored {
        assert!(seen.contains(id), "event {id} never arrived");
    }
    for (stream, sequences) in &streams {
        let expected: Vec<i64> = (1..=sequences.len() as i64).collect();
        assert_eq!(sequences, &expected, "{stream:?} out of order");
    }
    drop(broker);
    db.drop().await;
}

#[tokio::test]
async fn a_projection_fed_from_kafka_equals_the_one_fed_from_postgres() {
    let db = database().await;
    let broker = Broker::start(&db).await;
    let stores = Stores::new(&db.pool);
    let relay = Relay::new(db.pool.clone(), config(&broker)).unwrap();
    relay.ensure_topics().await.unwrap();
    let skus: Vec<String> = (0..5).map(|n| format!("KPR-{n}")).collect();
    workload(&stores, 3, &skus, 200).await;
    relay_all(&relay).await;

    let stock = || projections::pg::by_name("stock").unwrap();
    let fed = KafkaProjection::new(&db.pool, stock(), "rm_stock_kafka", "kafka:stock")
        .await
        .unwrap();
    let source = |group: &str| {
        KafkaSource::new(&SourceConfig {
            brokers: broker.brokers(),
            group: group.to_owned(),
            aggregate_types: vec!["inventory".into()],
            poll: Duration::from_secs(3),
        })
        .unwrap()
    };
    let mut first = source("projector");
    let applied = drain_source(&fed, &db, &mut first).await;
    assert!(applied > 100, "applied {applied}");

    // the same read model from the PostgreSQL log
    let pg = stock();
    projections::pg::ensure_live(&db.pool, pg.as_ref())
        .await
        .unwrap();
    while projections::pg::step(&db.pool, pg.as_ref(), 1_000)
        .await
        .unwrap()
        > 0
    {}
    assert_same(&db, "rm_stock", "rm_stock_kafka").await;

    // everything delivered again (a new group reads from the start): nothing changes
    let mut again = source("projector-again");
    assert_eq!(drain_source(&fed, &db, &mut again).await, 0);
    assert_same(&db, "rm_stock", "rm_stock_kafka").await;

    // a poison message: to the dead-letter topic with its error; the consumer moves on
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to("shop.inventory.v1")
                .key("KPR-0")
                .payload("{not an envelope"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    workload(&stores, 4, &skus, 20).await;
    relay_all(&relay).await;
    assert!(
        drain_source(&fed, &db, &mut first).await > 0,
        "events after the poison applied"
    );
    while projections::pg::step(&db.pool, pg.as_ref(), 1_000)
        .await
        .unwrap()
        > 0
    {}
    assert_same(&db, "rm_stock", "rm_stock_kafka").await;
    let dead: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", "dead-letter-check")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    dead.subscribe(&[DEAD_LETTER_TOPIC]).unwrap();
    let message = tokio::time::timeout(Duration::from_secs(20), dead.recv())
        .await
        .expect("a dead letter")
        .unwrap();
    assert_eq!(message.payload().unwrap(), b"{not an envelope");
    let headers = message.headers().expect("headers");
    let error = headers
        .iter()
        .find(|h| h.key == "error")
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap();
    assert!(error.contains("not an event envelope"), "{error}");
    drop(broker);
    db.drop().await;
}

async fn drain_source(fed: &KafkaProjection, db: &TestDatabase, source: &mut KafkaSource) -> usize {
    let mut applied = 0;
    let mut quiet = 0;
    while quiet < 2 {
        let n = fed.step(&db.pool, source, 500).await.unwrap();
        applied += n;
        quiet = if n == 0 { quiet + 1 } else { 0 };
    }
    applied
}

/// The two schemas' tables hold the same rows.
async fn assert_same(db: &TestDatabase, a: &str, b: &str) {
    for table in ["stock", "reservations"] {
        let difference: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM ((TABLE {a}.{table} EXCEPT TABLE {b}.{table})
                                   UNION ALL (TABLE {b}.{table} EXCEPT TABLE {a}.{table})) d"
        ))
        .fetch_one(&db.pool)
        .await
        .unwrap();
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {a}.{table}"))
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(difference, 0, "{a}.{table} and {b}.{table} differ");
        assert!(rows > 0 || table == "reservations", "{a}.{table} is empty");
    }
}
