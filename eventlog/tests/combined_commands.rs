//! Commands queued on one stream, decided one after another and written together, against the
//! real PostgreSQL: each keeps its own answer (events, sequence, log position, dedup, domain
//! error), nothing is lost or oversold, and two processes hammering one stream still agree.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Utc;
use domain::inventory::{Inventory, InventoryCommand, InventoryError, InventoryEvent};
use domain::{OrderId, Quantity, Sku};
use eventlog::store::ExecuteError;
use eventlog::testing::TestDatabase;
use eventlog::{audit, migrate, Actor, EventMetadata, LogPosition, PgEventStore};
use sqlx::PgPool;
use uuid::Uuid;

fn command(id: &str) -> EventMetadata {
    let mut metadata = EventMetadata::new(Actor::system("test"));
    metadata.command_id = id.to_owned();
    metadata
}

fn reserve_one() -> InventoryCommand {
    InventoryCommand::Reserve {
        order_id: OrderId::new(Uuid::new_v4()),
        quantity: Quantity::new(1).unwrap(),
        expires_at: Utc::now() + chrono::Duration::minutes(15),
    }
}

async fn stocked(store: &PgEventStore<Inventory>, sku: &str, units: u32) {
    store
        .execute(
            sku,
            InventoryCommand::ReceiveStock {
                sku: Sku::parse(sku).unwrap(),
                quantity: Quantity::new(units).unwrap(),
            },
            &command("stock"),
        )
        .await
        .unwrap();
}

/// (sequence, transaction id, global position) of a stream's events.
async fn stream(pool: &PgPool, id: &str) -> Vec<(i64, i64, i64)> {
    sqlx::query_as(
        "SELECT sequence, transaction_id::text::bigint, global_position FROM events
          WHERE aggregate_type = 'inventory' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_queued_on_one_stream_share_a_transaction_and_keep_their_own_answers() {
    let db = TestDatabase::create(migrate::MIGRATIONS, 16).await;
    let store = Arc::new(PgEventStore::<Inventory>::new(db.pool.clone()));
    stocked(&store, "HOT", 1_000).await;

    // 96 reservations, 8 commands the aggregate rejects, and one command sent twice at once
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..105 {
        let store = store.clone();
        tasks.spawn(async move {
            let (id, cmd) = match n {
                0..=95 => (format!("reserve-{n}"), reserve_one()),
                96..=103 => (
                    format!("bad-{n}"),
                    InventoryCommand::AdjustStock {
                        delta: 5,
                        reason: String::new(),
                    },
                ),
                _ => ("twice".to_owned(), reserve_one()),
            };
            let twice = if n == 104 {
                let store = store.clone();
                let cmd = cmd.clone();
                Some(tokio::spawn(async move {
                    store.execute("HOT", cmd, &command("twice")).await
                }))
            } else {
                None
            };
            let answer = store.execute("HOT", cmd, &command(&id)).await;
            let second = match twice {
                Some(handle) => Some(handle.await.unwrap()),
                None => None,
            };
            (n, answer, second)
        });
    }
    let mut answers = Vec::new();
    while let Some(done) = tasks.join_next().await {
        answers.push(done.unwrap());
    }

    let events = stream(&db.pool, "HOT").await;
    let sequences: Vec<i64> = events.iter().map(|e| e.0).collect();
    assert_eq!(
        sequences,
        (1..=98).collect::<Vec<i64>>(),
        "the stock, 96 + 1 reservations, no gap"
    );
    let position_of = |sequence: i64| {
        let (_, transaction_id, global_position) = events[(sequence - 1) as usize];
        LogPosition {
            transaction_id,
            global_position,
        }
    };
    let mut twice = Vec::new();
    for (n, answer, second) in answers {
        match n {
            0..=95 => {
                let receipt = answer.expect("a reservation");
                assert!(!receipt.replayed);
                assert!(matches!(
                    receipt.events.as_slice(),
                    [InventoryEvent::StockReserved { .. }]
                ));
                assert_eq!(
                    receipt.position,
                    Some(position_of(receipt.last_sequence)),
                    "command {n}'s position is its event's"
                );
            }
            96..=103 => assert!(
                matches!(
                    answer,
                    Err(ExecuteError::Domain(InventoryError::EmptyReason))
                ),
                "command {n}: {answer:?}"
            ),
            _ => {
                twice.push(answer.unwrap());
                twice.push(second.unwrap().unwrap());
            }
        }
    }
    twice.sort_by_key(|receipt| receipt.replayed);
    assert!(
        !twice[0].replayed && twice[1].replayed,
        "one run, one replay"
    );
    assert_eq!(twice[0].position, twice[1].position);
    assert_eq!(twice[0].events, twice[1].events);
    assert_eq!(twice[0].position, Some(position_of(twice[0].last_sequence)));

    let transactions: BTreeSet<i64> = events[1..].iter().map(|e| e.1).collect();
    assert!(
        transactions.len() < 97,
        "queued commands share transactions: 97 events in {} transactions",
        transactions.len()
    );
    let state = store.load_latest("HOT").await.unwrap().aggregate;
    assert_eq!(state.reserved(), 97);
    assert_eq!(state.on_hand(), 1_000);
    let report = audit::verify_all(&db.pool, |_| {}).await.unwrap();
    assert_eq!(report.broken_links, 0, "{:?}", report.first_broken);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_batching_on_one_stream_never_oversell() {
    let db = TestDatabase::create(migrate::MIGRATIONS, 16).await;
    // two stores = two processes: each its own cache, queues and group committer's view
    let first = Arc::new(PgEventStore::<Inventory>::new(db.pool.clone()));
    let second = Arc::new(PgEventStore::<Inventory>::new(db.pool.clone()));
    stocked(&first, "LAST-40", 40).await;

    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..96 {
        let store = if n % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tasks.spawn(async move {
            store
                .execute("LAST-40", reserve_one(), &command(&format!("r-{n}")))
                .await
        });
    }
    let (mut reserved, mut refused) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        let receipt = done
            .unwrap()
            .expect("every command answered (conflicts retried)");
        // (the reservation that empties the stock also says so: LowStock)
        match receipt.events.first() {
            Some(InventoryEvent::StockReserved { .. }) => reserved += 1,
            Some(InventoryEvent::ReservationRefused { .. }) => refused += 1,
            other => panic!("unexpected events {other:?}"),
        }
    }
    assert_eq!(
        (reserved, refused),
        (40, 56),
        "exactly the stock was reserved"
    );
    let sequences: Vec<i64> = stream(&db.pool, "LAST-40")
        .await
        .iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(
        sequences,
        (1..=sequences.len() as i64).collect::<Vec<i64>>(),
        "no gap"
    );
    assert!(sequences.len() >= 97, "the stock and 96 answers");
    let state = first.load_latest("LAST-40").await.unwrap().aggregate;
    assert_eq!((state.reserved(), state.available()), (40, 0));
    let report = audit::verify_all(&db.pool, |_| {}).await.unwrap();
    assert_eq!(report.broken_links, 0, "{:?}", report.first_broken);
    db.drop().await;
}
