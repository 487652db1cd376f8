//! Order numbers assigned in groups against the real PostgreSQL: gap-free across two assigners
//! (two saga runners), each order numbered once however often it asks.

use std::collections::{BTreeSet, HashMap};

use domain::OrderId;
use eventlog::testing::TestDatabase;
use futures_util::future::join_all;
use sagas::order_numbers::OrderNumbers;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_assigners_number_concurrent_orders_once_each_without_gaps() {
    let db = TestDatabase::create(
        eventlog::migrate::MIGRATIONS
            .iter()
            .chain(sagas::MIGRATIONS),
        8,
    )
    .await;
    let first_runner = OrderNumbers::new(db.pool.clone());
    let second_runner = OrderNumbers::new(db.pool.clone());
    let orders: Vec<OrderId> = (0..300).map(|_| OrderId(Uuid::new_v4())).collect();

    // every order asks twice, once on each runner (a step retried after a crash), all at once
    let asks = orders.iter().enumerate().flat_map(|(n, order)| {
        let (a, b) = if n % 2 == 0 {
            (&first_runner, &second_runner)
        } else {
            (&second_runner, &first_runner)
        };
        [a.assign(*order), b.assign(*order)]
    });
    let answers = join_all(asks).await;

    let mut number_of: HashMap<OrderId, u64> = HashMap::new();
    for (n, answer) in answers.into_iter().enumerate() {
        let number = answer.expect("a number").0;
        let order = orders[n / 2];
        if let Some(earlier) = number_of.insert(order, number) {
            assert_eq!(earlier, number, "order {order:?} got two numbers");
        }
    }
    let numbers: BTreeSet<u64> = number_of.values().copied().collect();
    assert_eq!(
        numbers,
        (1..=300).collect::<BTreeSet<u64>>(),
        "one number per order, no gaps"
    );

    // a later ask, on a fresh assigner, gets the stored number and takes no new one
    let again = OrderNumbers::new(db.pool.clone())
        .assign(orders[7])
        .await
        .unwrap();
    assert_eq!(again.0, number_of[&orders[7]]);
    let next = first_runner.assign(OrderId(Uuid::new_v4())).await.unwrap();
    assert_eq!(next.0, 301);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM order_numbers")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 301);
    db.drop().await;
}
