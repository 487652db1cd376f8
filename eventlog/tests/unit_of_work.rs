//! Units of work against the real PostgreSQL: commands on several streams, and rows of other
//! tables, written in one transaction — all or nothing; a unit whose stream moved is refused
//! whole and succeeds when decided again; command ids are deduplicated as for single commands;
//! concurrent units share transactions without one's refusal touching another.

use std::sync::Arc;
use std::time::Duration;

use domain::inventory::{Inventory, InventoryCommand};
use domain::{Quantity, Sku};
use eventlog::group::{GroupCommitter, GroupConfig};
use eventlog::testing::TestDatabase;
use eventlog::{audit, migrate, Actor, EventMetadata, PgEventStore, UnitOfWork};
use serde_json::json;
use sqlx::PgPool;

async fn database() -> TestDatabase {
    let db = TestDatabase::create(migrate::MIGRATIONS, 16).await;
    sqlx::query("CREATE TABLE marks (mark text NOT NULL)")
        .execute(&db.pool)
        .await
        .unwrap();
    db
}

/// A side write: one row of `marks` per unit written.
const MARK: &str =
    "INSERT INTO marks (mark) SELECT m.mark FROM jsonb_to_recordset($1) AS m(mark text)";

fn command(id: &str) -> EventMetadata {
    let mut metadata = EventMetadata::new(Actor::system("test"));
    metadata.command_id = id.to_owned();
    metadata
}

fn receive(stream: &str, quantity: u32) -> InventoryCommand {
    InventoryCommand::ReceiveStock {
        sku: Sku::parse(stream).unwrap(),
        quantity: Quantity::new(quantity).unwrap(),
    }
}

/// (sequence, transaction id) of a stream's events.
async fn stream(pool: &PgPool, id: &str) -> Vec<(i64, i64)> {
    sqlx::query_as(
        "SELECT sequence, transaction_id::text::bigint FROM events
          WHERE aggregate_type = 'inventory' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn marks(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT mark FROM marks ORDER BY mark")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn chains_intact(pool: &PgPool) {
    let report = audit::verify_all(pool, |_| {}).await.unwrap();
    assert_eq!(report.broken_links, 0, "{:?}", report.first_broken);
}

#[tokio::test]
async fn a_unit_writes_its_streams_and_side_writes_in_one_transaction_with_intact_chains() {
    let db = database().await;
    let store = PgEventStore::<Inventory>::new(db.pool.clone());
    // an existing stream, so the unit chains onto a stored head
    store
        .execute("SKU-A", receive("SKU-A", 1), &command("seed"))
        .await
        .unwrap();

    let mut unit = UnitOfWork::new(&db.pool);
    let first = store
        .stage(&mut unit, "SKU-A", receive("SKU-A", 2), &command("a-1"))
        .await
        .unwrap();
    assert_eq!((first.events.len(), first.last_sequence), (1, 2));
    let second = store
        .stage(&mut unit, "SKU-A", receive("SKU-A", 3), &command("a-2"))
        .await
        .unwrap();
    assert_eq!(second.last_sequence, 3, "decided on what the unit staged");
    assert_eq!(second.aggregate.on_hand(), 6);
    store
        .stage(&mut unit, "SKU-B", receive("SKU-B", 5), &command("b-1"))
        .await
        .unwrap();
    unit.also(MARK, json!({"mark": "written"}));
    assert!(
        stream(&db.pool, "SKU-B").await.is_empty(),
        "nothing before the commit"
    );
    let receipt = unit.commit().await.unwrap();

    let a = stream(&db.pool, "SKU-A").await;
    let b = stream(&db.pool, "SKU-B").await;
    assert_eq!(a.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(b.iter().map(|e| e.0).collect::<Vec<_>>(), [1]);
    let transaction = b[0].1;
    assert_eq!(
        (a[1].1, a[2].1),
        (transaction, transaction),
        "one transaction"
    );
    assert_ne!(a[0].1, transaction);
    assert_eq!(receipt.position.unwrap().transaction_id, transaction);
    assert_eq!(marks(&db.pool).await, ["written"]);
    chains_intact(&db.pool).await;

    // the same command ids again (a step replayed after a crash): nothing new is written
    let mut again = UnitOfWork::new(&db.pool);
    let replayed = store
        .stage(&mut again, "SKU-A", receive("SKU-A", 2), &command("a-1"))
        .await
        .unwrap();
    assert!(replayed.replayed);
    assert_eq!(replayed.events, first.events);
    let replayed = store
        .stage(&mut again, "SKU-B", receive("SKU-B", 5), &command("b-1"))
        .await
        .unwrap();
    assert!(replayed.replayed);
    assert_eq!(again.commit().await.unwrap().position, None);
    assert_eq!(stream(&db.pool, "SKU-A").await.len(), 3);
    // and a store that never saw them (another process) finds them in the stream
    let other = PgEventStore::<Inventory>::new(db.pool.clone())
        .without_group_commit()
        .reading_unknown_streams();
    let mut elsewhere = UnitOfWork::alone(&db.pool);
    let seen = other
        .stage(
            &mut elsewhere,
            "SKU-B",
            receive("SKU-B", 5),
            &command("b-1"),
        )
        .await
        .unwrap();
    assert!(seen.replayed, "deduplicated by the stream's dedup window");
    // one that guesses unknown streams new finds out at the commit, and then reads the stream
    let guessing = PgEventStore::<Inventory>::new(db.pool.clone());
    let mut guessed = UnitOfWork::new(&db.pool);
    guessing
        .stage(&mut guessed, "SKU-B", receive("SKU-B", 5), &command("b-1"))
        .await
        .unwrap();
    assert!(matches!(
        guessed.commit().await,
        Err(eventlog::Error::Conflict)
    ));
    let mut read = UnitOfWork::new(&db.pool);
    let seen = guessing
        .stage(&mut read, "SKU-B", receive("SKU-B", 5), &command("b-1"))
        .await
        .unwrap();
    assert!(seen.replayed);
    assert_eq!(stream(&db.pool, "SKU-B").await.len(), 1);
    db.drop().await;
}

#[tokio::test]
async fn a_unit_dropped_before_its_commit_writes_nothing_and_frees_its_streams() {
    let db = database().await;
    let store = PgEventStore::<Inventory>::new(db.pool.clone());
    let mut unit = UnitOfWork::new(&db.pool);
    store
        .stage(&mut unit, "SKU-A", receive("SKU-A", 2), &command("a-1"))
        .await
        .unwrap();
    store
        .stage(&mut unit, "SKU-B", receive("SKU-B", 2), &command("b-1"))
        .await
        .unwrap();
    unit.also(MARK, json!({"mark": "never"}));
    drop(unit); // the process dies between deciding and writing
    assert!(stream(&db.pool, "SKU-A").await.is_empty());
    assert!(stream(&db.pool, "SKU-B").await.is_empty());
    assert!(marks(&db.pool).await.is_empty());
    // the streams' turns are free, and the cache does not believe the dropped events
    let receipt = tokio::time::timeout(
        Duration::from_secs(5),
        store.execute("SKU-A", receive("SKU-A", 7), &command("a-2")),
    )
    .await
    .expect("the turn was given back")
    .unwrap();
    assert_eq!(receipt.last_sequence, 1);
    assert_eq!(receipt.events.len(), 1);
    chains_intact(&db.pool).await;
    db.drop().await;
}

#[tokio::test]
async fn a_unit_whose_stream_moved_is_refused_whole_and_written_when_decided_again() {
    let db = database().await;
    let ours = PgEventStore::<Inventory>::new(db.pool.clone());
    // another process's store: a cache of its own
    let theirs = PgEventStore::<Inventory>::new(db.pool.clone()).without_group_commit();
    for id in ["SKU-A", "SKU-B"] {
        ours.execute(id, receive(id, 1), &command(&format!("seed-{id}")))
            .await
            .unwrap();
    }
    // SKU-B moves behind our cache's back
    theirs
        .execute("SKU-B", receive("SKU-B", 1), &command("theirs"))
        .await
        .unwrap();

    let mut unit = UnitOfWork::new(&db.pool);
    ours.stage(&mut unit, "SKU-A", receive("SKU-A", 2), &command("a"))
        .await
        .unwrap();
    let stale = ours
        .stage(&mut unit, "SKU-B", receive("SKU-B", 2), &command("b"))
        .await
        .unwrap();
    assert_eq!(
        stale.last_sequence, 2,
        "decided on the cached head, which is stale"
    );
    unit.also(MARK, json!({"mark": "first try"}));
    let refused = unit.commit().await;
    assert!(
        matches!(refused, Err(eventlog::Error::Conflict)),
        "{refused:?}"
    );
    assert_eq!(
        stream(&db.pool, "SKU-A").await.len(),
        1,
        "nothing of the unit"
    );
    assert_eq!(stream(&db.pool, "SKU-B").await.len(), 2);
    assert!(marks(&db.pool).await.is_empty());

    // decided again: the moved stream is read this time
    let mut retry = UnitOfWork::new(&db.pool);
    ours.stage(&mut retry, "SKU-A", receive("SKU-A", 2), &command("a"))
        .await
        .unwrap();
    let fresh = ours
        .stage(&mut retry, "SKU-B", receive("SKU-B", 2), &command("b"))
        .await
        .unwrap();
    assert_eq!(fresh.last_sequence, 3);
    assert_eq!(fresh.aggregate.on_hand(), 4);
    retry.also(MARK, json!({"mark": "second try"}));
    retry.commit().await.unwrap();
    assert_eq!(stream(&db.pool, "SKU-A").await.len(), 2);
    assert_eq!(stream(&db.pool, "SKU-B").await.len(), 3);
    assert_eq!(marks(&db.pool).await, ["second try"]);

    // a stream guessed new that exists is read after its refusal, not guessed again
    let newcomer = PgEventStore::<Inventory>::new(db.pool.clone());
    let mut guessed = UnitOfWork::new(&db.pool);
    newcomer
        .stage(
            &mut guessed,
            "SKU-A",
            receive("SKU-A", 1),
            &command("guess"),
        )
        .await
        .unwrap();
    assert!(matches!(
        guessed.commit().await,
        Err(eventlog::Error::Conflict)
    ));
    let mut read = UnitOfWork::new(&db.pool);
    let staged = newcomer
        .stage(&mut read, "SKU-A", receive("SKU-A", 1), &command("guess"))
        .await
        .unwrap();
    assert_eq!(staged.last_sequence, 3);
    read.commit().await.unwrap();
    chains_intact(&db.pool).await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_units_share_transactions_and_one_refused_unit_touches_no_other() {
    let db = database().await;
    let committer = GroupCommitter::new(
        db.pool.clone(),
        GroupConfig {
            max_commands: 64,
            flushers: 1,
        },
    );
    let store = Arc::new(PgEventStore::<Inventory>::new(db.pool.clone()));
    let theirs = PgEventStore::<Inventory>::new(db.pool.clone()).without_group_commit();
    // the stale unit's stream, moved behind our cache's back
    store
        .execute("SKU-STALE", receive("SKU-STALE", 1), &command("seed"))
        .await
        .unwrap();
    theirs
        .execute("SKU-STALE", receive("SKU-STALE", 1), &command("theirs"))
        .await
        .unwrap();

    let mut tasks = Vec::new();
    for n in 0..40 {
        let store = store.clone();
        let committer = committer.clone();
        let pool = db.pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut unit = UnitOfWork::with_committer(&pool, Some(committer));
            let (a, b) = (format!("SKU-{n}-A"), format!("SKU-{n}-B"));
            store
                .stage(&mut unit, &a, receive(&a, 1), &command(&a))
                .await
                .unwrap();
            store
                .stage(&mut unit, &b, receive(&b, 1), &command(&b))
                .await
                .unwrap();
            if n == 20 {
                // this unit also writes the stale stream: it is refused, whole
                store
                    .stage(
                        &mut unit,
                        "SKU-STALE",
                        receive("SKU-STALE", 1),
                        &command("stale"),
                    )
                    .await
                    .unwrap();
            }
            unit.also(MARK, json!({"mark": format!("{n:02}")}));
            (n, unit.commit().await)
        }));
    }
    let mut written = 0;
    for task in tasks {
        let (n, result) = task.await.unwrap();
        let a = stream(&db.pool, &format!("SKU-{n}-A")).await;
        let b = stream(&db.pool, &format!("SKU-{n}-B")).await;
        if n == 20 {
            assert!(
                matches!(result, Err(eventlog::Error::Conflict)),
                "{result:?}"
            );
            assert!(a.is_empty() && b.is_empty(), "nothing of the refused unit");
        } else {
            result.unwrap();
            assert_eq!((a.len(), b.len()), (1, 1));
            assert_eq!(a[0].1, b[0].1, "a unit is one transaction");
            written += 1;
        }
    }
    assert_eq!(written, 39);
    let marks = marks(&db.pool).await;
    assert_eq!(marks.len(), 39);
    assert!(!marks.contains(&"20".to_owned()));
    let transactions: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT transaction_id) FROM events WHERE aggregate_id LIKE 'SKU-%-A'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        transactions < 39,
        "concurrent units shared transactions ({transactions} for 39 units)"
    );
    assert_eq!(stream(&db.pool, "SKU-STALE").await.len(), 2);
    chains_intact(&db.pool).await;
    db.drop().await;
}
