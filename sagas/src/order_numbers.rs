//! Order numbers: assigned once per order, in order, with no gaps (a failed checkout still has a
//! placed, then failed, order, so it keeps its number).
//!
//! Gap-free numbering is a counter every placement takes in turn, across every saga runner: one
//! transaction at a time holds `pg_advisory_xact_lock(ORDER_NUMBER_LOCK)`. Taking it once per
//! order made it the checkout's bottleneck (waits of up to 2 s under load, each holder paying a
//! commit). So numbers are assigned in groups, like the event store's group commit: the orders
//! that ask while one group is being written wait in a queue and are numbered together by the
//! next group, in one transaction and one statement. Numbers stay gap-free: a group's rows commit
//! together or not at all, and a number is handed out only after its commit.

use std::sync::OnceLock;

use domain::{OrderId, OrderNumber};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Advisory lock key serialising number assignment across processes.
const ORDER_NUMBER_LOCK: i64 = 7_300_001;

/// Most orders numbered by one transaction.
pub const MAX_GROUP: usize = 512;

/// Why an order got no number; the caller retries the step.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OrderNumberError {
    #[error("order numbers: {0}")]
    Database(String),
    #[error("order numbers: the assigning task stopped")]
    Stopped,
}

type Answer = oneshot::Sender<Result<OrderNumber, OrderNumberError>>;

/// Assigns order numbers in groups (see the module's documentation). Cheap to clone: clones
/// share one queue and one assigning task, started on first use.
#[derive(Clone)]
pub struct OrderNumbers {
    pool: PgPool,
    queue: std::sync::Arc<OnceLock<mpsc::UnboundedSender<(OrderId, Answer)>>>,
}

impl OrderNumbers {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            queue: Default::default(),
        }
    }

    /// The order's number: the one it already has, or the next free one.
    pub async fn assign(&self, order_id: OrderId) -> Result<OrderNumber, OrderNumberError> {
        let queue = self.queue.get_or_init(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(assign_groups(self.pool.clone(), receiver));
            sender
        });
        let (answer, answered) = oneshot::channel();
        queue
            .send((order_id, answer))
            .map_err(|_| OrderNumberError::Stopped)?;
        answered.await.map_err(|_| OrderNumberError::Stopped)?
    }
}

/// The assigning task: takes whatever is queued (up to [`MAX_GROUP`]), numbers it in one
/// transaction, answers, and goes on until every sender is gone.
async fn assign_groups(pool: PgPool, mut receiver: mpsc::UnboundedReceiver<(OrderId, Answer)>) {
    while let Some(first) = receiver.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        // arrival order, each order once (a retried step may ask twice)
        let mut seen = std::collections::HashSet::with_capacity(group.len());
        let orders: Vec<Uuid> = group
            .iter()
            .map(|(id, _)| id.as_uuid())
            .filter(|id| seen.insert(*id))
            .collect();
        metrics::histogram!("shop_order_number_group_size").record(orders.len() as f64);
        match number_group(&pool, &orders).await {
            Ok(numbers) => {
                for (order_id, answer) in group {
                    let number = numbers
                        .binary_search_by_key(&order_id.as_uuid(), |(id, _)| *id)
                        .map(|at| OrderNumber(numbers[at].1 as u64))
                        .map_err(|_| {
                            OrderNumberError::Database(format!("order {order_id} got no number"))
                        });
                    let _ = answer.send(number);
                }
            }
            Err(error) => {
                let error = OrderNumberError::Database(error.to_string());
                for (_, answer) in group {
                    let _ = answer.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Numbers the orders that have none (in the order given, after the highest number so far) and
/// returns every given order's number, sorted by order id.
async fn number_group(pool: &PgPool, orders: &[Uuid]) -> Result<Vec<(Uuid, i64)>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ORDER_NUMBER_LOCK)
        .execute(&mut *tx)
        .await?;
    // One statement: the outer SELECT sees the table as it was before the INSERT, so the two
    // halves of the UNION are the new and the existing numbers, never both.
    let mut numbers: Vec<(Uuid, i64)> = sqlx::query_as(
        "WITH wanted AS (
             SELECT id, position FROM unnest($1::uuid[]) WITH ORDINALITY AS w(id, position)
         ),
         fresh AS (
             SELECT id, row_number() OVER (ORDER BY position) AS offset_in_group
             FROM wanted
             WHERE NOT EXISTS (SELECT 1 FROM order_numbers o WHERE o.order_id = wanted.id)
         ),
         highest AS (SELECT coalesce(max(number), 0) AS number FROM order_numbers),
         assigned AS (
             INSERT INTO order_numbers (order_id, number)
             SELECT fresh.id, highest.number + fresh.offset_in_group FROM fresh, highest
             RETURNING order_id, number
         )
         SELECT order_id, number FROM assigned
         UNION ALL
         SELECT order_id, number FROM order_numbers WHERE order_id = ANY($1)",
    )
    .bind(orders)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    numbers.sort_unstable_by_key(|(id, _)| *id);
    Ok(numbers)
}
