//! The event stores of every aggregate, configured once: each with its upcasters (so old event
//! versions load) and its snapshot policy. Every role that writes events builds them here.

use cqrs_es::Aggregate;
use domain::{Cart, CheckoutProcess, Inventory, Order, Payment, Product};
use eventlog::store::SnapshotPolicy;
use eventlog::PgEventStore;
use sqlx::PgPool;

pub struct Stores {
    pub products: PgEventStore<Product>,
    pub inventory: PgEventStore<Inventory>,
    pub carts: PgEventStore<Cart>,
    pub orders: PgEventStore<Order>,
    pub payments: PgEventStore<Payment>,
    pub checkouts: PgEventStore<CheckoutProcess>,
}

/// The event store of one aggregate type, with its upcasters and snapshot policy.
pub fn event_store<A>(pool: &PgPool) -> PgEventStore<A>
where
    A: Aggregate,
    A::Services: Default,
{
    let store = PgEventStore::<A>::new(pool.clone()).with_upcasters(crate::upcasters(A::TYPE));
    // inventory streams of hot SKUs grow without bound (every reservation is an event)
    if A::TYPE == Inventory::TYPE {
        store.with_snapshots(SnapshotPolicy {
            every: 200,
            version: 1,
        })
    } else {
        store
    }
}

impl Stores {
    pub fn new(pool: &PgPool) -> Self {
        Self {
            products: event_store(pool),
            inventory: event_store(pool),
            carts: event_store(pool),
            orders: event_store(pool),
            payments: event_store(pool),
            checkouts: event_store(pool),
        }
    }
}
