//! Group commit against the real PostgreSQL: concurrent commands on different streams share
//! transactions; one command's conflict or error never fails, partly writes or holds back
//! another; the gap-safe reader still sees every event once, in log order.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use domain::inventory::{Inventory, InventoryCommand};
use domain::{Quantity, Sku};
use eventlog::group::{GroupCommitter, GroupConfig};
use eventlog::store::{append_bulk, CommandReceipt, ExecuteError, NewEvent};
use eventlog::testing::TestDatabase;
use eventlog::{audit, log, migrate, Actor, EventMetadata, LogPosition, PgEventStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use sqlx::{Connection, PgPool};

type Outcome = Result<CommandReceipt<domain::InventoryEvent>, ExecuteError<domain::InventoryError>>;

async fn database(connections: u32) -> TestDatabase {
    TestDatabase::create(migrate::MIGRATIONS, connections).await
}

fn metadata() -> EventMetadata {
    EventMetadata::new(Actor::system("test"))
}

fn receive(stream: &str, quantity: u32) -> InventoryCommand {
    InventoryCommand::ReceiveStock {
        sku: Sku::parse(stream).unwrap(),
        quantity: Quantity::new(quantity).unwrap(),
    }
}

/// One committer of one flusher, so the test decides what forms a group.
fn one_flusher(pool: &PgPool) -> Arc<GroupCommitter> {
    GroupCommitter::new(
        pool.clone(),
        GroupConfig {
            max_commands: 64,
            flushers: 1,
        },
    )
}

/// (transaction id, global position) of a stream's events, by sequence.
async fn positions(pool: &PgPool, stream: &str) -> Vec<(i64, LogPosition)> {
    sqlx::query_as::<_, (i64, i64, i64)>(
        "SELECT sequence, transaction_id::text::bigint, global_position FROM events
          WHERE aggregate_type = 'inventory' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(stream)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(sequence, transaction_id, global_position)| {
        (
            sequence,
            LogPosition {
                transaction_id,
                global_position,
            },
        )
    })
    .collect()
}

/// Waits until a session of the test's database waits for a lock.
async fn until_someone_waits_for_a_lock(db: &TestDatabase) {
    for _ in 0..500 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
        )
        .bind(&db.name)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("nobody waited for a lock");
}

/// Commits `tx` once a session waits for it (for a row it wrote).
async fn commit_once_waited_for(
    db: &TestDatabase,
    mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
) {
    let xid: String = sqlx::query_scalar("SELECT pg_current_xact_id()::xid::text")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    for _ in 0..500 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks
              WHERE NOT granted AND locktype = 'transactionid' AND transactionid::text = $1",
        )
        .bind(&xid)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if waiting > 0 {
            tx.commit().await.unwrap();
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("nobody waited for the racing transaction");
}

/// A command of [`as_one_group`]: the store it runs through (a new one when `None`), its stream
/// and itself.
type GroupMember = (
    Option<Arc<PgEventStore<Inventory>>>,
    String,
    InventoryCommand,
);

/// Runs `commands` as one group of `committer`: while its only flusher is stuck on a command
/// waiting for a row lock (another session's uncommitted insert on its stream), the commands
/// queue up; then the lock goes away and they are flushed together. Each command runs through
/// its own store (the given one, or a new one on the committer), because commands of one store
/// on streams of one turn-taking shard wait for each other before they reach the queue.
///
/// `racing` are transactions that wrote to streams of the group, each committed (in turn) once
/// the group waits for it.
async fn as_one_group(
    db: &TestDatabase,
    committer: &Arc<GroupCommitter>,
    commands: Vec<GroupMember>,
    racing: Vec<sqlx::Transaction<'static, sqlx::Postgres>>,
) -> Vec<Outcome> {
    let new_store = || {
        Arc::new(
            PgEventStore::<Inventory>::new(db.pool.clone()).with_group_committer(committer.clone()),
        )
    };
    let block = format!("BLOCK-{}", uuid::Uuid::new_v4().simple()).to_uppercase();
    let mut blocker = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut blocking = blocker.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata, recorded_at, event_id, prev_hash, hash)
         VALUES ('inventory', $1, 1, 'StockReceived', '1', '{}', '{}', now(),
                 gen_random_uuid(), '\\x00', '\\x00')",
    )
    .bind(&block)
    .execute(&mut *blocking)
    .await
    .unwrap();
    let blocked = tokio::spawn({
        let store = new_store();
        let block = block.clone();
        async move { store.execute(&block, receive(&block, 1), &metadata()).await }
    });
    // the flusher is stuck once the blocked command waits for the lock
    until_someone_waits_for_a_lock(db).await;
    let count = commands.len();
    let tasks: Vec<_> = commands
        .into_iter()
        .map(|(store, stream, command)| {
            let store = store.unwrap_or_else(new_store);
            tokio::spawn(async move { store.execute(&stream, command, &metadata()).await })
        })
        .collect();
    let mut waits = 0;
    while committer.queued() < count {
        waits += 1;
        assert!(waits < 500, "the commands never queued up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    blocking.rollback().await.unwrap();
    blocked.await.unwrap().expect("the blocked command");
    for tx in racing {
        commit_once_waited_for(db, tx).await;
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

async fn assert_chains_verify(pool: &PgPool) {
    let report = audit::verify_all(pool, |_| {}).await.unwrap();
    assert!(report.is_intact(), "{:?}", report.first_broken);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_on_different_streams_share_transactions() {
    let db = database(24).await;
    let store = Arc::new(PgEventStore::<Inventory>::new(db.pool.clone()));
    let mut writers = Vec::new();
    for writer in 0..16 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut receipts = Vec::new();
            for n in 0..20 {
                let stream = format!("W-{writer}-{}", n % 5);
                let receipt = store
                    .execute(&stream, receive(&stream, 1), &metadata())
                    .await
                    .unwrap();
                receipts.push((stream, receipt));
            }
            receipts
        }));
    }
    let mut receipts = Vec::new();
    for writer in writers {
        receipts.extend(writer.await.unwrap());
    }
    assert_eq!(receipts.len(), 320);

    // each receipt's position is where its event is
    let mut stored: HashMap<String, Vec<(i64, LogPosition)>> = HashMap::new();
    for (stream, receipt) in &receipts {
        if !stored.contains_key(stream) {
            stored.insert(stream.clone(), positions(&db.pool, stream).await);
        }
        let events = &stored[stream];
        assert_eq!(events.len(), 4, "{stream}");
        let at = &events[receipt.last_sequence as usize - 1];
        assert_eq!(
            (at.0, Some(at.1)),
            (receipt.last_sequence, receipt.position)
        );
    }
    let transactions: i64 = sqlx::query_scalar("SELECT count(DISTINCT transaction_id) FROM events")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(
        transactions < 320 * 3 / 4,
        "320 commands took {transactions} transactions"
    );
    assert_chains_verify(&db.pool).await;
    db.drop().await;
}

/// Runs 16 new streams `<prefix>-1..16` and `conflicted` (stream, command, and the sequence its
/// retry writes; through `store`) as one group, with `racing` transactions committed while the
/// group waits for them. Checks that the 16 were written whole in one transaction, and each
/// conflicted command not in it but after it, on retry; and that every receipt says where its
/// events are.
async fn a_group_with_conflicts(
    db: &TestDatabase,
    committer: &Arc<GroupCommitter>,
    store: &Arc<PgEventStore<Inventory>>,
    prefix: &str,
    conflicted: Vec<(&str, InventoryCommand, i64)>,
    racing: Vec<sqlx::Transaction<'static, sqlx::Postgres>>,
) {
    let others = |n: usize| format!("{prefix}-{n}");
    let mut commands: Vec<_> = (1..=16)
        .map(|n| (None, others(n), receive(&others(n), 5)))
        .collect();
    let count = conflicted.len();
    for (stream, command, _) in &conflicted {
        commands.push((Some(store.clone()), stream.to_string(), command.clone()));
    }
    let outcomes = as_one_group(db, committer, commands, racing).await;
    let mut receipts: Vec<_> = outcomes
        .into_iter()
        .map(|o| o.expect("every command succeeds"))
        .collect();
    let retried = receipts.split_off(16);
    assert_eq!(retried.len(), count);

    // the others: fully written, all in one transaction, where their receipts say
    let mut group_transactions = HashSet::new();
    for (n, receipt) in receipts.iter().enumerate() {
        let events = positions(&db.pool, &others(n + 1)).await;
        assert_eq!(events.len(), 1, "{}", others(n + 1));
        assert_eq!(receipt.position, Some(events[0].1));
        group_transactions.insert(events[0].1.transaction_id);
    }
    assert_eq!(
        group_transactions.len(),
        1,
        "the group's other commands were not written in one transaction"
    );
    let group_transaction = *group_transactions.iter().next().unwrap();

    // the conflicted ones: nothing of their first try; each retry wrote its sequence, later
    for ((stream, _, sequence), receipt) in conflicted.iter().zip(retried) {
        let events = positions(&db.pool, stream).await;
        assert_eq!(events.len() as i64, *sequence, "{stream}: {events:?}");
        assert!(
            events
                .iter()
                .all(|(_, p)| p.transaction_id != group_transaction),
            "the conflicted command on {stream} wrote in the group's transaction"
        );
        let last = events.last().unwrap().1;
        assert!(last.transaction_id > group_transaction);
        assert_eq!(
            (receipt.last_sequence, receipt.position),
            (*sequence, Some(last))
        );
    }
}

/// Another process's transaction, left open, that wrote `stream`'s event `sequence`.
async fn racing_write(
    pool: &PgPool,
    stream: &str,
    sequence: i64,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut racing = pool.begin().await.unwrap();
    let event = NewEvent {
        aggregate_type: "inventory".into(),
        aggregate_id: stream.into(),
        sequence,
        event_type: "StockReceived".into(),
        event_version: "1".into(),
        payload: json!({"StockReceived": {"sku": stream, "quantity": 2}}),
        metadata: serde_json::to_value(metadata().to_map()).unwrap(),
    };
    append_bulk(&mut racing, &[event]).await.unwrap();
    racing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_in_a_group_fails_that_command_alone_and_it_succeeds_on_retry() {
    let db = database(24).await;
    let committer = one_flusher(&db.pool);
    let here = Arc::new(
        PgEventStore::<Inventory>::new(db.pool.clone()).with_group_committer(committer.clone()),
    );
    // another process
    let there = PgEventStore::<Inventory>::new(db.pool.clone()).without_group_commit();

    // a stale cache: `here` still thinks X ends at 1, its next command on X takes sequence 2,
    // which is taken (the group's INSERT leaves it out)
    here.execute("X", receive("X", 1), &metadata())
        .await
        .unwrap();
    there
        .execute("X", receive("X", 2), &metadata())
        .await
        .unwrap();
    a_group_with_conflicts(
        &db,
        &committer,
        &here,
        "G",
        vec![("X", receive("X", 3), 3)],
        Vec::new(),
    )
    .await;
    assert_eq!(there.load("X").await.unwrap().aggregate.on_hand(), 6);

    // races: other processes' transactions write Y's sequence 2 and Z's sequence 1 and commit
    // while the group waits for them. The group's INSERT fails on Y's stream key; the group is
    // written again, each command in its own subtransaction, and there Z's fails on its key.
    here.execute("Y", receive("Y", 1), &metadata())
        .await
        .unwrap();
    let racing = vec![
        racing_write(&db.pool, "Y", 2).await,
        racing_write(&db.pool, "Z", 1).await,
    ];
    a_group_with_conflicts(
        &db,
        &committer,
        &here,
        "H",
        vec![("Y", receive("Y", 3), 3), ("Z", receive("Z", 3), 2)],
        racing,
    )
    .await;
    assert_eq!(there.load("Y").await.unwrap().aggregate.on_hand(), 6);
    assert_eq!(there.load("Z").await.unwrap().aggregate.on_hand(), 5);
    assert_chains_verify(&db.pool).await;
    db.drop().await;
}

/// A trigger that refuses, like a constraint would, the rows of one stream: `sqlstate` is the
/// error it raises.
async fn refuse_stream(pool: &PgPool, stream: &str, sqlstate: &str) {
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION refuse_{sqlstate}() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             RAISE EXCEPTION 'refused by the test' USING ERRCODE = '{sqlstate}';
         END $$;
         CREATE TRIGGER refuse_{sqlstate} BEFORE INSERT ON events FOR EACH ROW
             WHEN (NEW.aggregate_id = '{stream}') EXECUTE FUNCTION refuse_{sqlstate}();"
    ))
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_of_one_command_fails_it_alone() {
    let db = database(24).await;
    // check_violation inside the group (each command in its own subtransaction), and
    // query_canceled, which no PL/pgSQL handler catches (the whole statement fails: each
    // command is written alone)
    refuse_stream(&db.pool, "BAD", "23514").await;
    refuse_stream(&db.pool, "WORSE", "57014").await;
    let committer = one_flusher(&db.pool);
    for (bad, grouped) in [("BAD", true), ("WORSE", false)] {
        let mut commands: Vec<_> = (1..=8)
            .map(|n| {
                let stream = format!("{bad}-OK-{n}");
                let command = receive(&stream, 1);
                (None, stream, command)
            })
            .collect();
        commands.push((None, bad.to_owned(), receive(bad, 1)));
        let mut outcomes = as_one_group(&db, &committer, commands, Vec::new()).await;
        let failed = outcomes.pop().unwrap();
        match failed {
            Err(ExecuteError::Store(eventlog::Error::Database(sqlx::Error::Database(error)))) => {
                assert_eq!(
                    error.code().as_deref(),
                    Some(if grouped { "23514" } else { "57014" })
                )
            }
            other => panic!("{bad}: {other:?}"),
        }
        assert!(positions(&db.pool, bad).await.is_empty());
        let mut transactions = HashSet::new();
        for (n, outcome) in outcomes.into_iter().enumerate() {
            let receipt = outcome.expect("the others succeed");
            let events = positions(&db.pool, &format!("{bad}-OK-{}", n + 1)).await;
            assert_eq!(events.len(), 1);
            assert_eq!(receipt.position, Some(events[0].1));
            transactions.insert(events[0].1.transaction_id);
        }
        if grouped {
            assert_eq!(transactions.len(), 1, "{bad}: the others left the group");
        } else {
            assert_eq!(transactions.len(), 8, "{bad}: each written alone");
        }
    }
    assert_chains_verify(&db.pool).await;
    db.drop().await;
}

#[tokio::test]
async fn the_xid_order_guard_refuses_one_command_of_a_group_alone() {
    let db = database(2).await;
    let uuids = || uuid::Uuid::new_v4();
    // two commands, the second on a stream whose last event (says the caller) is from a
    // transaction newer than this one
    type Answer = (i32, Option<i64>, Option<i64>, Option<String>);
    let rows: Vec<Answer> = sqlx::query_as(
        "SELECT command, transaction_id, global_position, refused
           FROM append_group(ARRAY['t', 't'], ARRAY['A', 'B'], ARRAY['{}', '{}']::jsonb[],
                             ARRAY[now(), now()], ARRAY[0, $1]::bigint[], ARRAY[1, 1, 2],
                             ARRAY[1, 2, 1]::bigint[], ARRAY['E', 'E', 'E'], ARRAY['1', '1', '1'],
                             ARRAY['{}', '{}', '{}']::jsonb[], ARRAY[$2, $3, $4]::uuid[],
                             ARRAY['\\x00', '\\x00', '\\x00']::bytea[],
                             ARRAY['\\x01', '\\x02', '\\x03']::bytea[])",
    )
    .bind(i64::from(u32::MAX) * 4)
    .bind(uuids())
    .bind(uuids())
    .bind(uuids())
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].0, 1);
    assert!(rows[0].1.is_some() && rows[0].2.is_some() && rows[0].3.is_none());
    assert_eq!(
        (rows[1].0, rows[1].2, rows[1].3.as_deref()),
        (2, None, Some("40001"))
    );
    let stored: Vec<(String, i64)> =
        sqlx::query_as("SELECT aggregate_id, sequence FROM events ORDER BY global_position")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(stored, [("A".to_owned(), 1), ("A".to_owned(), 2)]);
    db.drop().await;
}

// ---------------------------------------------------------------------------------------------
// The gap-safe reader under grouped writers

/// A writer of commands: mostly on streams shared with the other writers (and with the other
/// "process"), sometimes on its own. Returns what it wrote: (stream, sequence) of every event.
async fn grouped_writer(
    store: Arc<PgEventStore<Inventory>>,
    writer: u64,
    commands: usize,
) -> Vec<(String, i64)> {
    let mut rng = StdRng::seed_from_u64(writer);
    let mut written = Vec::new();
    for _ in 0..commands {
        let stream = if rng.random_bool(0.5) {
            format!("SHARED-{}", rng.random_range(0..8))
        } else {
            format!("OWN-{writer}-{}", rng.random_range(0..4))
        };
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..3))).await;
        match store
            .execute(&stream, receive(&stream, 1), &metadata())
            .await
        {
            Ok(receipt) => {
                for offset in 0..receipt.events.len() as i64 {
                    written.push((stream.clone(), receipt.last_sequence - offset));
                }
            }
            Err(ExecuteError::Conflict { .. }) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_sees_every_grouped_event_once_in_log_order() {
    let db = database(40).await;
    let pool = db.pool.clone();
    let expected = Arc::new(AtomicUsize::new(0));

    // a transaction that takes its xid early and commits late, while groups commit around it
    let idle = tokio::spawn({
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            let event = NewEvent {
                aggregate_type: "idle".into(),
                aggregate_id: "IDLE".into(),
                sequence: 1,
                event_type: "Idled".into(),
                event_version: "1".into(),
                payload: json!({"idle": true}),
                metadata: json!({}),
            };
            append_bulk(&mut tx, &[event]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(400)).await;
            tx.commit().await.unwrap();
        }
    });

    // follows the log until it has read as many events as the table holds once the writers are
    // done (an empty batch is no end: another test's open transaction holds readers back), or
    // gives up after a while and returns what it read
    let reader = tokio::spawn({
        let pool = pool.clone();
        let expected = expected.clone();
        async move {
            let mut seen = Vec::new();
            let mut position = LogPosition::START;
            let mut idle_reads = 0;
            loop {
                let wanted = expected.load(Ordering::SeqCst);
                let batch = log::read_after(&pool, position, 41).await.unwrap();
                if let Some(last) = batch.last() {
                    position = last.position;
                }
                idle_reads = if batch.is_empty() { idle_reads + 1 } else { 0 };
                seen.extend(batch);
                if wanted > 0 && (seen.len() >= wanted || idle_reads > 5_000) {
                    // and nothing more after it
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    seen.extend(log::read_after(&pool, position, 41).await.unwrap());
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });

    // two processes, each with its committer, stores and writers
    let mut writers = Vec::new();
    for process in 0..2u64 {
        let committer = GroupCommitter::new(
            pool.clone(),
            GroupConfig {
                max_commands: 64,
                flushers: 2,
            },
        );
        let store =
            Arc::new(PgEventStore::<Inventory>::new(pool.clone()).with_group_committer(committer));
        for writer in 0..8 {
            writers.push(tokio::spawn(grouped_writer(
                store.clone(),
                process * 100 + writer,
                40,
            )));
        }
    }
    let mut written: Vec<(String, i64)> = Vec::new();
    for writer in writers {
        written.extend(writer.await.unwrap());
    }
    idle.await.unwrap();
    written.push(("IDLE".into(), 1));
    expected.store(written.len(), Ordering::SeqCst);
    let seen = reader.await.unwrap();

    let claimed: HashSet<(String, i64)> = written.iter().cloned().collect();
    assert_eq!(claimed.len(), written.len(), "one sequence written twice");
    let stored: HashSet<(String, i64)> =
        sqlx::query_as::<_, (String, i64)>("SELECT aggregate_id, sequence FROM events")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    assert!(
        stored == claimed,
        "the table holds exactly what was written"
    );
    let read: Vec<(String, i64)> = seen
        .iter()
        .map(|e| (e.aggregate_id.clone(), e.sequence))
        .collect();
    let read_set: HashSet<(String, i64)> = read.iter().cloned().collect();
    assert_eq!(read_set.len(), read.len(), "the reader saw an event twice");
    assert!(
        read_set == claimed,
        "the reader missed {} events and saw {} unwritten ones",
        claimed.difference(&read_set).count(),
        read_set.difference(&claimed).count()
    );
    // in an order consistent with every stream's, positions strictly increasing
    let mut heads: HashMap<&str, i64> = HashMap::new();
    for event in &seen {
        let head = heads.entry(&event.aggregate_id).or_insert(0);
        assert_eq!(
            event.sequence,
            *head + 1,
            "{} out of order",
            event.aggregate_id
        );
        *head = event.sequence;
    }
    assert!(seen.windows(2).all(|w| w[0].position < w[1].position));
    // and the writers did share transactions
    let commands = written.len() as i64;
    let transactions: i64 = sqlx::query_scalar("SELECT count(DISTINCT transaction_id) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        transactions < commands,
        "{commands} commands in {transactions} transactions"
    );
    assert_chains_verify(&pool).await;
    drop(pool);
    db.drop().await;
}

// ---------------------------------------------------------------------------------------------
// Streams the store does not know

#[tokio::test]
async fn a_stream_not_in_the_cache_is_decided_as_new_and_read_when_it_is_not() {
    let db = database(4).await;
    let here = PgEventStore::<Inventory>::new(db.pool.clone());
    // a new stream
    let first = here
        .execute("NEW-1", receive("NEW-1", 2), &metadata())
        .await
        .unwrap();
    assert_eq!(first.last_sequence, 1);
    // a stream another process wrote, unknown here: the guess is refused (nothing written), the
    // stream is read, the command decided on it
    let there = PgEventStore::<Inventory>::new(db.pool.clone());
    there
        .execute("OLD-1", receive("OLD-1", 5), &metadata())
        .await
        .unwrap();
    let receipt = here
        .execute("OLD-1", receive("OLD-1", 1), &metadata())
        .await
        .unwrap();
    assert_eq!(receipt.last_sequence, 2);
    let stored = PgEventStore::<Inventory>::new(db.pool.clone())
        .load("OLD-1")
        .await
        .unwrap();
    assert_eq!(
        (stored.current_sequence, stored.aggregate.on_hand()),
        (2, 6)
    );
    // a command the empty stream rejects is not answered from the guess either
    let adjust = InventoryCommand::AdjustStock {
        delta: -6,
        reason: "count".into(),
    };
    let fresh = PgEventStore::<Inventory>::new(db.pool.clone());
    fresh
        .execute("OLD-1", adjust, &metadata())
        .await
        .expect("decided on the stream, not on the guess");
    let stored = fresh.load("OLD-1").await.unwrap();
    assert_eq!(stored.aggregate.on_hand(), 0);
    // opting out reads first
    let reading = PgEventStore::<Inventory>::new(db.pool.clone()).reading_unknown_streams();
    let receipt = reading
        .execute("OLD-1", receive("OLD-1", 1), &metadata())
        .await
        .unwrap();
    assert_eq!(receipt.last_sequence, stored.current_sequence + 1);
    assert_chains_verify(&db.pool).await;
    db.drop().await;
}
