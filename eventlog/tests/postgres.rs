//! The event log against the real PostgreSQL: the gap-safe reader under concurrent writers,
//! the hash chain and its anchors against tampering, snapshots, conflicts and migrations.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use domain::inventory::{Inventory, InventoryCommand};
use domain::product::{Product, ProductCommand};
use domain::{Currency, Money, OrderId, Quantity, Sku};
use eventlog::anchor::{self, AnchorKey, AnchorProblem, SignatureProblem};
use eventlog::audit::{self, Problem};
use eventlog::store::{append_bulk, ExecuteError, NewEvent, SnapshotPolicy};
use eventlog::testing::TestDatabase;
use eventlog::{checkpoint, log, migrate, Actor, EventMetadata, LogPosition, PgEventStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use sqlx::PgPool;

async fn database(connections: u32) -> TestDatabase {
    TestDatabase::create(migrate::MIGRATIONS, connections).await
}

/// Reads the log until it holds `count` events. xids are cluster-wide, so a transaction open in
/// another test's database holds this one's readers back for a moment too.
async fn wait_for_log(pool: &PgPool, count: usize) -> Vec<log::RecordedEvent> {
    for _ in 0..500 {
        let events = log::read_after(pool, LogPosition::START, 1_000)
            .await
            .unwrap();
        if events.len() >= count {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the log never showed {count} events");
}

fn metadata() -> EventMetadata {
    EventMetadata::new(Actor::system("test"))
}

fn sku(text: &str) -> Sku {
    Sku::parse(text).unwrap()
}

fn create_product(code: &str) -> ProductCommand {
    ProductCommand::Create {
        sku: sku(code),
        name: format!("Product {code}"),
        description: "test product".into(),
        category: "tests".into(),
        price: Money::new(1_999, Currency::parse("EUR").unwrap()),
        created_at: chrono::Utc::now(),
    }
}

// ---------------------------------------------------------------------------------------------
// The gap-safe reader

/// One torture event, as a writer claims to have committed it.
type StreamEvent = (String, i64);

/// Appends the next event of `stream` in `tx` (read the head, insert head + 1).
async fn append_next(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    stream: &str,
    payload: serde_json::Value,
) -> eventlog::Result<i64> {
    let head: i64 = sqlx::query_scalar(
        "SELECT coalesce(max(sequence), 0) FROM events WHERE aggregate_type = 'torture' AND aggregate_id = $1",
    )
    .bind(stream)
    .fetch_one(&mut **tx)
    .await?;
    let event = NewEvent {
        aggregate_type: "torture".into(),
        aggregate_id: stream.into(),
        sequence: head + 1,
        event_type: "Tortured".into(),
        event_version: "1".into(),
        payload,
        metadata: json!({}),
    };
    append_bulk(tx, &[event]).await?;
    Ok(head + 1)
}

/// A writer: transactions on a few shared streams, with random delays inside, some rolled back,
/// conflicts retried. Returns what it committed.
async fn torture_writer(pool: PgPool, writer: u64, transactions: usize) -> Vec<StreamEvent> {
    let mut rng = StdRng::seed_from_u64(writer);
    let mut committed = Vec::new();
    for n in 0..transactions {
        loop {
            let mut tx = pool.begin().await.unwrap();
            let events = rng.random_range(1..=3);
            let mut written = Vec::new();
            let mut conflict = false;
            for e in 0..events {
                // mostly shared streams (contention), sometimes the writer's own
                let stream = if rng.random_bool(0.7) {
                    format!("shared-{}", rng.random_range(0..6))
                } else {
                    format!("own-{writer}")
                };
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..4))).await;
                match append_next(&mut tx, &stream, json!({"writer": writer, "n": n, "e": e})).await
                {
                    Ok(sequence) => written.push((stream, sequence)),
                    Err(_) => {
                        conflict = true;
                        break;
                    }
                }
            }
            if conflict {
                tx.rollback().await.ok();
                continue;
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..8))).await;
            if rng.random_bool(0.2) {
                tx.rollback().await.unwrap();
                break;
            }
            match tx.commit().await {
                Ok(()) => {
                    committed.extend(written);
                    break;
                }
                Err(_) => continue,
            }
        }
    }
    committed
}

#[derive(Default)]
struct Seen {
    gap_safe: Vec<log::RecordedEvent>,
    naive: Vec<i64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_sees_every_committed_event_once_in_stream_order_under_torture() {
    let db = database(40).await;
    let pool = db.pool.clone();
    let writers_done = Arc::new(AtomicBool::new(false));
    let naive_position = Arc::new(AtomicI64::new(0));

    // The idle writer: opens a transaction, writes one event (taking an early global position),
    // and stays idle until the naive reader has read past that position, then commits.
    let idle = tokio::spawn({
        let pool = pool.clone();
        let naive_position = naive_position.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            let sequence = append_next(&mut tx, "idle", json!({"idle": true}))
                .await
                .unwrap();
            let position: i64 = sqlx::query_scalar(
                "SELECT global_position FROM events WHERE aggregate_type = 'torture' AND aggregate_id = 'idle'",
            )
            .fetch_one(&mut *tx)
            .await
            .unwrap();
            let waited = tokio::time::timeout(Duration::from_secs(60), async {
                while naive_position.load(Ordering::SeqCst) <= position {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            assert!(
                waited.is_ok(),
                "the naive reader never passed the idle event"
            );
            tx.commit().await.unwrap();
            vec![("idle".to_owned(), sequence)]
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    // The reader under test follows the gap-safe log; a naive reader follows global_position.
    let reader = tokio::spawn({
        let pool = pool.clone();
        let writers_done = writers_done.clone();
        let naive_position = naive_position.clone();
        async move {
            let mut seen = Seen::default();
            let mut position = LogPosition::START;
            loop {
                let finished = writers_done.load(Ordering::SeqCst);
                let batch = log::read_after(&pool, position, 37).await.unwrap();
                if let Some(last) = batch.last() {
                    position = last.position;
                }
                let drained = batch.is_empty();
                seen.gap_safe.extend(batch);

                let naive: Vec<i64> = sqlx::query_scalar(
                    "SELECT global_position FROM events WHERE global_position > $1 ORDER BY global_position LIMIT 37",
                )
                .bind(naive_position.load(Ordering::SeqCst))
                .fetch_all(&pool)
                .await
                .unwrap();
                if let Some(last) = naive.last() {
                    naive_position.store(*last, Ordering::SeqCst);
                }
                seen.naive.extend(naive);
                if finished && drained {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }
    });

    let mut writers = Vec::new();
    for writer in 0..12 {
        writers.push(tokio::spawn(torture_writer(pool.clone(), writer, 30)));
    }
    let mut committed: Vec<StreamEvent> = Vec::new();
    for writer in writers {
        committed.extend(writer.await.unwrap());
    }
    committed.extend(idle.await.unwrap());
    writers_done.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();

    // Every committed event exactly once, and nothing else (no rolled-back event).
    let stored: HashSet<StreamEvent> = sqlx::query_as::<_, (String, i64)>(
        "SELECT aggregate_id, sequence FROM events WHERE aggregate_type = 'torture'",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let claimed: HashSet<StreamEvent> = committed.iter().cloned().collect();
    assert_eq!(
        claimed.len(),
        committed.len(),
        "a writer committed one sequence twice"
    );
    assert!(
        stored == claimed,
        "the table holds exactly what writers committed"
    );
    let read: Vec<StreamEvent> = seen
        .gap_safe
        .iter()
        .map(|e| (e.aggregate_id.clone(), e.sequence))
        .collect();
    let read_set: HashSet<StreamEvent> = read.iter().cloned().collect();
    assert_eq!(read_set.len(), read.len(), "the reader saw an event twice");
    let missed: Vec<_> = claimed.difference(&read_set).collect();
    let extra: Vec<_> = read_set.difference(&claimed).collect();
    assert!(
        missed.is_empty() && extra.is_empty(),
        "the reader missed {} committed events (e.g. {:?}) and saw {} uncommitted ones (e.g. {:?})",
        missed.len(),
        missed.iter().take(3).collect::<Vec<_>>(),
        extra.len(),
        extra.iter().take(3).collect::<Vec<_>>()
    );
    assert!(
        committed.len() > 200,
        "the torture wrote too little: {}",
        committed.len()
    );

    // In an order consistent with every stream's sequence, and positions strictly increasing.
    let mut heads: HashMap<&str, i64> = HashMap::new();
    for event in &seen.gap_safe {
        let head = heads.entry(&event.aggregate_id).or_insert(0);
        assert_eq!(
            event.sequence,
            *head + 1,
            "stream {} out of order",
            event.aggregate_id
        );
        *head = event.sequence;
    }
    assert!(seen
        .gap_safe
        .windows(2)
        .all(|w| w[0].position < w[1].position));

    // The control: following global_position alone skipped the idle transaction's event.
    let naive: HashSet<i64> = seen.naive.iter().copied().collect();
    let idle_position: i64 = sqlx::query_scalar(
        "SELECT global_position FROM events WHERE aggregate_type = 'torture' AND aggregate_id = 'idle'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        !naive.contains(&idle_position),
        "the naive reader should have skipped the late-committing event"
    );
    drop(pool);
    db.drop().await;
}

#[tokio::test]
async fn an_open_transaction_holds_readers_back_and_shows_in_the_status() {
    let db = database(4).await;
    let store = PgEventStore::<Product>::new(db.pool.clone());
    store
        .execute("A-1", create_product("A-1"), &metadata())
        .await
        .unwrap();
    wait_for_log(&db.pool, 1).await;

    let mut open = db.pool.begin().await.unwrap();
    append_next(&mut open, "held", json!({})).await.unwrap();
    store
        .execute("A-2", create_product("A-2"), &metadata())
        .await
        .unwrap();

    let visible = log::read_after(&db.pool, LogPosition::START, 100)
        .await
        .unwrap();
    assert_eq!(
        visible.len(),
        1,
        "only the event before the open transaction is safe to read"
    );
    let status = log::status(&db.pool).await.unwrap();
    assert_eq!(status.held_back_events, 1, "A-2 is committed but held back");
    assert_eq!(status.safe_head, Some(visible[0].position));

    open.commit().await.unwrap();
    let all = wait_for_log(&db.pool, 3).await;
    assert_eq!(all.len(), 3);
    assert_eq!(log::status(&db.pool).await.unwrap().held_back_events, 0);
    db.drop().await;
}

#[tokio::test]
async fn checkpoints_persist_and_never_move_back() {
    let db = database(2).await;
    let name = "projection:test";
    assert_eq!(
        checkpoint::load(&db.pool, name).await.unwrap(),
        LogPosition::START
    );
    let later = LogPosition {
        transaction_id: 900,
        global_position: 12,
    };
    let earlier = LogPosition {
        transaction_id: 899,
        global_position: 40,
    };
    assert!(checkpoint::save(&db.pool, name, later).await.unwrap());
    assert!(!checkpoint::save(&db.pool, name, earlier).await.unwrap());
    assert_eq!(checkpoint::load(&db.pool, name).await.unwrap(), later);
    checkpoint::reset(&db.pool, name).await.unwrap();
    assert_eq!(
        checkpoint::load(&db.pool, name).await.unwrap(),
        LogPosition::START
    );
    db.drop().await;
}

// ---------------------------------------------------------------------------------------------
// The event store

#[tokio::test]
async fn commands_append_events_with_metadata_and_report_their_position() {
    let db = database(4).await;
    let store = PgEventStore::<Product>::new(db.pool.clone());
    let mut meta = metadata();
    meta.request_id = Some("req-42".into());
    let receipt = store
        .execute("P-1", create_product("P-1"), &meta)
        .await
        .unwrap();
    assert_eq!(receipt.last_sequence, 1);
    let position = receipt.position.expect("a position");
    let events = wait_for_log(&db.pool, 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].position, position);
    assert_eq!(events[0].event_type, "ProductCreated");
    assert_eq!(events[0].metadata["request_id"], "req-42");
    assert_eq!(events[0].metadata["actor_role"], "system");
    assert_eq!(
        events[0].metadata["correlation_id"],
        meta.correlation_id.to_string()
    );

    // a rejected command writes nothing and says why
    let again = store
        .execute("P-1", create_product("P-1"), &metadata())
        .await;
    assert!(matches!(again, Err(ExecuteError::Domain(_))));
    // a command that changes nothing writes nothing
    let same = store
        .execute(
            "P-1",
            ProductCommand::Rename {
                name: "Product P-1".into(),
            },
            &metadata(),
        )
        .await
        .unwrap();
    assert_eq!((same.position, same.last_sequence), (None, 1));
    assert_eq!(wait_for_log(&db.pool, 1).await.len(), 1);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_on_one_stream_are_retried_not_lost() {
    let db = database(20).await;
    // two stores stand for two processes: within one, commands on a stream take turns;
    // between them, they collide and retry
    let stores = [
        Arc::new(PgEventStore::<Inventory>::new(db.pool.clone())),
        Arc::new(PgEventStore::<Inventory>::new(db.pool.clone())),
    ];
    let mut tasks = Vec::new();
    for n in 0..32 {
        let store = stores[n % 2].clone();
        tasks.push(tokio::spawn(async move {
            let receive = InventoryCommand::ReceiveStock {
                sku: sku("HOT-1"),
                quantity: Quantity::new(1).unwrap(),
            };
            store.execute("HOT-1", receive, &metadata()).await
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => {}
            Err(ExecuteError::Conflict { .. }) => conflicts += 1,
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    let fresh = PgEventStore::<Inventory>::new(db.pool.clone());
    let context = fresh.load("HOT-1").await.unwrap();
    assert_eq!(
        context.current_sequence,
        32 - conflicts,
        "every success is exactly one event"
    );
    assert_eq!(context.aggregate.on_hand(), 32 - conflicts as u64);
    assert!(conflicts < 32);
    // each store's cached view of the stream catches up with the other's writes
    for store in &stores {
        let receive = InventoryCommand::ReceiveStock {
            sku: sku("HOT-1"),
            quantity: Quantity::new(1).unwrap(),
        };
        store.execute("HOT-1", receive, &metadata()).await.unwrap();
    }
    let context = fresh.load("HOT-1").await.unwrap();
    assert_eq!(context.aggregate.on_hand(), 34 - conflicts as u64);
    db.drop().await;
}

#[tokio::test]
async fn snapshots_give_the_same_aggregate_as_a_full_replay() {
    let db = database(4).await;
    let policy = SnapshotPolicy {
        every: 3,
        version: 1,
    };
    let snapshotting = PgEventStore::<Inventory>::new(db.pool.clone()).with_snapshots(policy);
    let replaying = PgEventStore::<Inventory>::new(db.pool.clone());
    let receive = |n| InventoryCommand::ReceiveStock {
        sku: sku("SNAP-1"),
        quantity: Quantity::new(n).unwrap(),
    };
    let mut expected_on_hand = 0;
    for n in 1..=10u32 {
        snapshotting
            .execute("SNAP-1", receive(n), &metadata())
            .await
            .unwrap();
        expected_on_hand += u64::from(n);
    }
    let order = OrderId::new(uuid::Uuid::new_v4());
    snapshotting
        .execute(
            "SNAP-1",
            InventoryCommand::Reserve {
                order_id: order,
                quantity: Quantity::new(5).unwrap(),
                expires_at: chrono::Utc::now() + chrono::Duration::minutes(15),
            },
            &metadata(),
        )
        .await
        .unwrap();

    // the stored snapshot must hold each event once (cqrs-es 0.5's snapshot modes apply twice)
    let (last_sequence, payload): (i64, serde_json::Value) = sqlx::query_as(
        "SELECT last_sequence, payload FROM snapshots WHERE aggregate_type = 'inventory' AND aggregate_id = 'SNAP-1'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(last_sequence, 9, "snapshots every 3 events: at 3, 6 and 9");
    let snapshot: Inventory = serde_json::from_value(payload).unwrap();
    assert_eq!(snapshot.on_hand(), (1..=9).sum::<u64>());

    let from_snapshot = snapshotting.load("SNAP-1").await.unwrap();
    let from_events = replaying.load("SNAP-1").await.unwrap();
    assert_eq!(from_snapshot.snapshot_sequence, 9);
    assert_eq!(from_snapshot.current_sequence, 11);
    assert_eq!(from_events.current_sequence, 11);
    assert_eq!(from_snapshot.aggregate, from_events.aggregate);
    assert_eq!(from_events.aggregate.on_hand(), expected_on_hand);
    assert_eq!(from_events.aggregate.available(), expected_on_hand - 5);

    // an unreadable snapshot falls back to the events
    sqlx::query("UPDATE snapshots SET payload = '{\"garbage\": true}'")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        snapshotting.load("SNAP-1").await.unwrap().aggregate,
        from_events.aggregate
    );
    db.drop().await;
}

#[tokio::test]
async fn events_cannot_be_updated_or_deleted_by_the_application() {
    let db = database(2).await;
    let store = PgEventStore::<Product>::new(db.pool.clone());
    store
        .execute("IM-1", create_product("IM-1"), &metadata())
        .await
        .unwrap();
    let update = sqlx::query("UPDATE events SET payload = '{}'")
        .execute(&db.pool)
        .await;
    let delete = sqlx::query("DELETE FROM events").execute(&db.pool).await;
    assert!(update.unwrap_err().to_string().contains("immutable"));
    assert!(delete.unwrap_err().to_string().contains("immutable"));
    db.drop().await;
}

#[tokio::test]
async fn migrations_are_idempotent_and_refuse_edited_history() {
    let db = database(2).await;
    let again = migrate::run(&db.pool, migrate::MIGRATIONS).await.unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(again.already_applied, vec![1, 2, 3]);
    let edited = [migrate::Migration {
        version: 1,
        name: "event_store",
        sql: "SELECT 1",
    }];
    assert!(matches!(
        migrate::run(&db.pool, &edited).await,
        Err(eventlog::Error::MigrationChanged { version: 1, .. })
    ));
    db.drop().await;
}

// ---------------------------------------------------------------------------------------------
// Tamper evidence

async fn write_products(pool: &PgPool, codes: &[&str]) {
    let store = PgEventStore::<Product>::new(pool.clone());
    for code in codes {
        store
            .execute(code, create_product(code), &metadata())
            .await
            .unwrap();
        for name in ["first name", "second name", "third name"] {
            store
                .execute(
                    code,
                    ProductCommand::Rename {
                        name: format!("{code} {name}"),
                    },
                    &metadata(),
                )
                .await
                .unwrap();
        }
    }
}

async fn tamper(pool: &PgPool, sql: &str) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("ALTER TABLE events DISABLE TRIGGER events_immutable")
        .execute(&mut *tx)
        .await
        .unwrap();
    let done = sqlx::query(sql).execute(&mut *tx).await.unwrap();
    assert_eq!(done.rows_affected(), 1, "the tampering touched one row");
    sqlx::query("ALTER TABLE events ENABLE TRIGGER events_immutable")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn verify_finds_an_edited_payload_and_a_deleted_event() {
    let db = database(4).await;
    write_products(&db.pool, &["T-A", "T-B", "T-C"]).await;
    // the writer's hashes agree with the SQL mirror auditors can use by hand
    let mirrored: bool = sqlx::query_scalar(
        "SELECT bool_and(hash = sha256(prev_hash || convert_to(event_hash_input(events), 'UTF8'))) FROM events",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(mirrored);
    let intact = audit::verify_all(&db.pool, |_| {}).await.unwrap();
    assert_eq!(
        (intact.streams, intact.events, intact.broken_links),
        (3, 12, 0)
    );
    assert!(audit::verify_stream(&db.pool, "product", "T-A")
        .await
        .unwrap()
        .is_intact());

    // the SQL trigger and the Rust verifier agree on what is hashed
    let mut progress = Vec::new();
    audit::verify_all(&db.pool, |done| progress.push(done))
        .await
        .unwrap();
    assert_eq!(progress.last(), Some(&12));

    tamper(
        &db.pool,
        "UPDATE events SET payload = jsonb_set(payload, '{ProductRenamed,name}', '\"forged\"')
          WHERE aggregate_id = 'T-B' AND sequence = 3",
    )
    .await;
    let edited = audit::verify_all(&db.pool, |_| {}).await.unwrap();
    let link = edited.first_broken.clone().expect("the edit is found");
    assert_eq!(
        (link.aggregate_id.as_str(), link.sequence, &link.problem),
        ("T-B", 3, &Problem::ContentAltered)
    );
    assert!(link.to_string().contains("T-B event #3"));
    assert!(audit::verify_stream(&db.pool, "product", "T-A")
        .await
        .unwrap()
        .is_intact());

    tamper(
        &db.pool,
        "DELETE FROM events WHERE aggregate_id = 'T-C' AND sequence = 2",
    )
    .await;
    let deleted = audit::verify_stream(&db.pool, "product", "T-C")
        .await
        .unwrap();
    let link = deleted.first_broken.expect("the deletion is found");
    assert_eq!(link.sequence, 3);
    assert_eq!(
        link.problem,
        Problem::MissingEvents {
            expected_sequence: 2
        }
    );
    let all = audit::verify_all(&db.pool, |_| {}).await.unwrap();
    assert_eq!(all.broken_links, 2);
    assert_eq!(
        all.first_broken.unwrap().aggregate_id,
        "T-B",
        "the first broken link in stream order"
    );

    // re-hashing the edited event itself does not help: the next one no longer chains to it
    tamper(
        &db.pool,
        "UPDATE events SET hash = sha256(prev_hash || convert_to(event_hash_input(events), 'UTF8'))
          WHERE aggregate_id = 'T-B' AND sequence = 3",
    )
    .await;
    let rehashed = audit::verify_stream(&db.pool, "product", "T-B")
        .await
        .unwrap();
    let link = rehashed.first_broken.expect("the re-hashed edit is found");
    assert_eq!((link.sequence, link.problem), (4, Problem::ChainBroken));
    db.drop().await;
}

#[tokio::test]
async fn bulk_appends_chain_events_of_many_streams_in_one_statement() {
    let db = database(2).await;
    let mut events = Vec::new();
    for stream in 0..5 {
        for sequence in 1..=4 {
            events.push(NewEvent {
                aggregate_type: "bulk".into(),
                aggregate_id: format!("s{stream}"),
                sequence,
                event_type: "Happened".into(),
                event_version: "1".into(),
                payload: json!({"Happened": {"n": sequence}}),
                metadata: json!({}),
            });
        }
    }
    let mut tx = db.pool.begin().await.unwrap();
    assert_eq!(append_bulk(&mut tx, &events).await.unwrap(), 20);
    tx.commit().await.unwrap();
    let report = audit::verify_all(&db.pool, |_| {}).await.unwrap();
    assert_eq!(
        (report.streams, report.events, report.broken_links),
        (5, 20, 0)
    );

    // a gap inside a batch is refused, and the whole batch with it
    let mut gap = events[..2].to_vec();
    gap.iter_mut().for_each(|e| e.aggregate_id = "gap".into());
    gap[1].sequence = 3;
    let mut tx = db.pool.begin().await.unwrap();
    assert!(append_bulk(&mut tx, &gap).await.is_err());
    tx.rollback().await.unwrap();
    let per_stream: BTreeMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT aggregate_id, count(*) FROM events GROUP BY aggregate_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert!(!per_stream.contains_key("gap"));
    db.drop().await;
}

// ---------------------------------------------------------------------------------------------
// Anchors: what the chain alone cannot see

fn anchor_key() -> AnchorKey {
    AnchorKey::new(b"an anchor key of the tests, 32+ bytes long".to_vec()).unwrap()
}

/// Three products of four events each, readable in the log, and an anchor of them.
async fn anchored_products(pool: &PgPool) -> anchor::Anchor {
    write_products(pool, &["AN-A", "AN-B", "AN-C"]).await;
    wait_for_log(pool, 12).await;
    let mut progress = Vec::new();
    let anchored = anchor::create(pool, &anchor_key(), |done, total| {
        progress.push((done, total))
    })
    .await
    .unwrap();
    assert_eq!((anchored.streams, anchored.events), (3, 12));
    assert_eq!(progress.last(), Some(&(12, 12)));
    let ids: Vec<(&str, i64)> = anchored
        .heads
        .iter()
        .map(|h| (h.aggregate_id.as_str(), h.sequence))
        .collect();
    assert_eq!(ids, [("AN-A", 4), ("AN-B", 4), ("AN-C", 4)]);
    anchored
}

async fn check_anchor(pool: &PgPool, anchored: &anchor::Anchor) -> anchor::AnchorReport {
    anchor::verify(pool, anchored, &anchor_key(), |_| {})
        .await
        .unwrap()
}

#[tokio::test]
async fn an_anchor_catches_a_truncated_tail_that_the_chain_misses() {
    let db = database(4).await;
    let anchored = anchored_products(&db.pool).await;
    let report = check_anchor(&db.pool, &anchored).await;
    assert!(report.holds(), "{report:?}");
    assert_eq!(report.heads_checked, 3);

    // streams grow and new ones start after the anchor: none of its business
    write_products(&db.pool, &["AN-D"]).await;
    PgEventStore::<Product>::new(db.pool.clone())
        .execute(
            "AN-A",
            ProductCommand::Rename {
                name: "later".into(),
            },
            &metadata(),
        )
        .await
        .unwrap();
    assert!(check_anchor(&db.pool, &anchored).await.holds());

    tamper(
        &db.pool,
        "DELETE FROM events WHERE aggregate_id = 'AN-B' AND sequence = 4",
    )
    .await;
    let chain = audit::verify_all(&db.pool, |_| {}).await.unwrap();
    assert!(chain.is_intact(), "the shorter chain still verifies");
    let report = check_anchor(&db.pool, &anchored).await;
    assert_eq!(
        report.first_problem,
        Some(AnchorProblem::Truncated {
            aggregate_type: "product".into(),
            aggregate_id: "AN-B".into(),
            anchored_sequence: 4,
            last_sequence: Some(3),
        })
    );
    assert!(report
        .first_problem
        .unwrap()
        .to_string()
        .contains("product/AN-B was truncated: anchored through event #4, now ends at #3"));
    // the event count at the anchored position is off too
    assert_eq!(report.problems, 2);

    // a stream removed whole
    for sequence in (1..=4).rev() {
        tamper(
            &db.pool,
            &format!("DELETE FROM events WHERE aggregate_id = 'AN-C' AND sequence = {sequence}"),
        )
        .await;
    }
    assert!(audit::verify_all(&db.pool, |_| {})
        .await
        .unwrap()
        .is_intact());
    let report = check_anchor(&db.pool, &anchored).await;
    assert_eq!(report.problems, 3);
    db.drop().await;
}

#[tokio::test]
async fn an_anchor_catches_a_tail_rewritten_with_a_recomputed_chain() {
    let db = database(4).await;
    let anchored = anchored_products(&db.pool).await;
    // the last two events of AN-A replaced, each re-hashed and re-chained as the writer would
    let rehash =
        "UPDATE events SET hash = sha256(prev_hash || convert_to(event_hash_input(events), 'UTF8'))
                   WHERE aggregate_id = 'AN-A' AND sequence = ";
    tamper(
        &db.pool,
        "UPDATE events SET payload = jsonb_set(payload, '{ProductRenamed,name}', '\"forged\"')
          WHERE aggregate_id = 'AN-A' AND sequence = 3",
    )
    .await;
    tamper(&db.pool, &format!("{rehash}3")).await;
    tamper(
        &db.pool,
        "UPDATE events SET prev_hash = (SELECT hash FROM events
                                         WHERE aggregate_id = 'AN-A' AND sequence = 3)
          WHERE aggregate_id = 'AN-A' AND sequence = 4",
    )
    .await;
    tamper(&db.pool, &format!("{rehash}4")).await;
    let chain = audit::verify_all(&db.pool, |_| {}).await.unwrap();
    assert!(chain.is_intact(), "the recomputed chain verifies");

    let report = check_anchor(&db.pool, &anchored).await;
    let problem = report.first_problem.expect("the rewrite is found");
    assert_eq!(
        problem,
        AnchorProblem::Rewritten {
            aggregate_type: "product".into(),
            aggregate_id: "AN-A".into(),
            sequence: 4,
        }
    );
    assert!(problem
        .to_string()
        .contains("product/AN-A event #4 was rewritten"));
    assert_eq!(report.problems, 1, "nothing else changed");
    db.drop().await;
}

#[tokio::test]
async fn a_tampered_or_foreign_anchor_file_is_refused_as_badly_signed() {
    let db = database(4).await;
    let anchored = anchored_products(&db.pool).await;
    let dir = std::env::temp_dir().join(format!("shop-anchors-{}", uuid::Uuid::new_v4()));
    let path = anchor::write_file(&dir, &anchored).unwrap();
    assert_eq!(anchor::read_dir(&dir).unwrap(), std::slice::from_ref(&path));
    let (_, read) = anchor::read_file(&path).unwrap();
    let read = read.unwrap();
    assert_eq!(read, anchored);
    assert!(check_anchor(&db.pool, &read).await.holds());

    let badly_signed = |result: Result<anchor::AnchorReport, anchor::VerifyError>| match result {
        Err(anchor::VerifyError::BadlySigned(problem)) => problem,
        other => panic!("not refused as badly signed: {other:?}"),
    };
    // a head moved back in the file (to hide a truncation), the digest left alone
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    json["heads"][1]["sequence"] = json!(3);
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let (_, forged) = anchor::read_file(&path).unwrap();
    let forged = forged.unwrap();
    let problem = badly_signed(anchor::verify(&db.pool, &forged, &anchor_key(), |_| {}).await);
    assert_eq!(problem, SignatureProblem::HeadsAltered);
    // ... and the digest recomputed too: the signature covers it
    let mut redigested = forged.clone();
    redigested.digest = anchor::digest(&redigested.heads);
    let problem = badly_signed(anchor::verify(&db.pool, &redigested, &anchor_key(), |_| {}).await);
    assert_eq!(problem, SignatureProblem::Mismatch);
    assert!(problem.to_string().contains("altered"));

    // an anchor signed with another key
    let other = AnchorKey::new(vec![b'x'; 32]).unwrap();
    let foreign = anchor::create(&db.pool, &other, |_, _| {}).await.unwrap();
    let problem = badly_signed(anchor::verify(&db.pool, &foreign, &anchor_key(), |_| {}).await);
    assert!(
        matches!(problem, SignatureProblem::OtherKey { .. }),
        "{problem:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    db.drop().await;
}

// ---------------------------------------------------------------------------------------------
// The canonical jsonb text the writer hashes must be exactly what PostgreSQL prints

fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
    use proptest::prelude::*;
    let text = "[^\\u{0}]{0,12}";
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        text.prop_map(serde_json::Value::String),
        "[\\x01-\\x1f\"\\\\/a-c]{0,6}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(text, inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn canonical_jsonb_text_matches_postgres() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = runtime.block_on(database(1));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(300));
    runner
        .run(&json_value(), |value| {
            let ours = eventlog::hash::jsonb_text(&value).unwrap();
            let theirs: String = runtime
                .block_on(
                    sqlx::query_scalar("SELECT $1::jsonb::text")
                        .bind(&value)
                        .fetch_one(&db.pool),
                )
                .unwrap();
            prop_assert_eq!(ours, theirs);
            Ok(())
        })
        .unwrap();
    runtime.block_on(db.drop());
}

#[tokio::test]
async fn a_stale_cached_stream_never_decides_alone() {
    let db = database(4).await;
    // two processes, each with its own cache of the stream
    let here = PgEventStore::<Inventory>::new(db.pool.clone());
    let there = PgEventStore::<Inventory>::new(db.pool.clone());
    let receive = |n: u32| InventoryCommand::ReceiveStock {
        sku: sku("STALE-1"),
        quantity: Quantity::new(n).unwrap(),
    };
    here.execute("STALE-1", receive(1), &metadata())
        .await
        .unwrap();
    // the other process takes the only unit: `here` still has it available in its cache
    let reserve = || InventoryCommand::Reserve {
        order_id: domain::OrderId::new(uuid::Uuid::new_v4()),
        quantity: Quantity::new(1).unwrap(),
        expires_at: chrono::Utc::now() + chrono::Duration::minutes(5),
    };
    there
        .execute("STALE-1", reserve(), &metadata())
        .await
        .unwrap();
    // a decision on the stale cache would reserve it again; the append refuses, the stream is
    // read, and the fresh decision is a refusal — no oversell
    let second = here
        .execute("STALE-1", reserve(), &metadata())
        .await
        .unwrap();
    assert!(
        !second
            .events
            .iter()
            .any(|e| matches!(e, domain::InventoryEvent::StockReserved { .. })),
        "reserved from a stale cache: {:?}",
        second.events
    );
    let stored = PgEventStore::<Inventory>::new(db.pool.clone())
        .load("STALE-1")
        .await
        .unwrap()
        .aggregate;
    assert_eq!((stored.on_hand(), stored.reserved()), (1, 1));

    // and the other way: the stale cache would reject what the stream allows (taking 3 units
    // off 1 on hand, after the other process received 5 more); the rejection is checked
    // against the stream before it is given, so the command succeeds
    there
        .execute("STALE-1", receive(5), &metadata())
        .await
        .unwrap();
    let adjust = InventoryCommand::AdjustStock {
        delta: -3,
        reason: "count".into(),
    };
    here.execute("STALE-1", adjust, &metadata())
        .await
        .expect("decided on the stream as it is, not on the cache");
    let stored = PgEventStore::<Inventory>::new(db.pool.clone())
        .load("STALE-1")
        .await
        .unwrap()
        .aggregate;
    assert_eq!(stored.on_hand(), 3);
    db.drop().await;
}

#[tokio::test]
async fn a_command_id_that_already_ran_on_the_stream_writes_nothing_again() {
    let db = database(2).await;
    let store = PgEventStore::<Inventory>::new(db.pool.clone());
    let mut meta = metadata();
    meta.command_id = "idempotency-key-1".into();
    let receive = InventoryCommand::ReceiveStock {
        sku: sku("DUP-1"),
        quantity: Quantity::new(5).unwrap(),
    };
    let first = store
        .execute("DUP-1", receive.clone(), &meta)
        .await
        .unwrap();
    let again = store
        .execute("DUP-1", receive.clone(), &meta)
        .await
        .unwrap();
    assert!(!first.replayed && again.replayed);
    assert_eq!(
        (again.position, again.last_sequence),
        (first.position, first.last_sequence)
    );
    assert_eq!(again.events, first.events);
    assert_eq!(store.load("DUP-1").await.unwrap().aggregate.on_hand(), 5);

    // another command id is another command
    let other = store.execute("DUP-1", receive, &metadata()).await.unwrap();
    assert!(!other.replayed);
    assert_eq!(store.load("DUP-1").await.unwrap().aggregate.on_hand(), 10);
    db.drop().await;
}

#[tokio::test]
async fn a_refused_precondition_writes_nothing() {
    let db = database(2).await;
    let store = PgEventStore::<Product>::new(db.pool.clone());
    let refused = store
        .execute_if("PRE-1", create_product("PRE-1"), &metadata(), |_| {
            Err(eventlog::store::Refusal::Forbidden)
        })
        .await;
    assert!(matches!(
        refused,
        Err(ExecuteError::Refused(eventlog::store::Refusal::Forbidden))
    ));
    assert_eq!(store.load("PRE-1").await.unwrap().current_sequence, 0);
    db.drop().await;
}

#[tokio::test]
async fn a_command_id_before_the_snapshot_is_still_recognised_by_a_fresh_store() {
    let db = database(2).await;
    let policy = SnapshotPolicy {
        every: 5,
        version: 1,
    };
    let store = PgEventStore::<Inventory>::new(db.pool.clone()).with_snapshots(policy);
    let receive = |n| InventoryCommand::ReceiveStock {
        sku: sku("SNAPDUP-1"),
        quantity: Quantity::new(n).unwrap(),
    };
    let mut retried = metadata();
    retried.command_id = "idempotency-key-snap".into();
    let first = store
        .execute("SNAPDUP-1", receive(100), &retried)
        .await
        .unwrap();
    // twelve more: snapshots at 5 and 10, the retried command's event is before both
    for n in 1..=12 {
        store
            .execute("SNAPDUP-1", receive(n), &metadata())
            .await
            .unwrap();
    }
    let snapshot_sequence: i64 = sqlx::query_scalar(
        "SELECT last_sequence FROM snapshots WHERE aggregate_type = 'inventory' AND aggregate_id = 'SNAPDUP-1'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(snapshot_sequence, 10);

    // another process (or this one after its cache was emptied) gets the retry
    let fresh = PgEventStore::<Inventory>::new(db.pool.clone()).with_snapshots(policy);
    let again = fresh
        .execute("SNAPDUP-1", receive(100), &retried)
        .await
        .unwrap();
    assert!(again.replayed, "the retry ran again: {again:?}");
    assert_eq!(
        (again.position, again.last_sequence, &again.events),
        (first.position, first.last_sequence, &first.events)
    );
    let stored = PgEventStore::<Inventory>::new(db.pool.clone())
        .load("SNAPDUP-1")
        .await
        .unwrap();
    assert_eq!(stored.current_sequence, 13, "nothing appended by the retry");
    assert_eq!(stored.aggregate.on_hand(), 100 + (1..=12).sum::<u64>());
    // loading from the snapshot still folds each event once
    let from_snapshot = fresh.load("SNAPDUP-1").await.unwrap();
    assert_eq!(from_snapshot.snapshot_sequence, 10);
    assert_eq!(from_snapshot.aggregate, stored.aggregate);
    db.drop().await;
}
