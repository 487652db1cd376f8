//! The event stores of every aggregate, configured once: each with its upcasters (so old event
//! versions load), its snapshot policy and, when a keyring is configured, the sealing of personal
//! fields ([`crate::personal`]). Every role that writes events builds them here.

use std::sync::Arc;

use cqrs_es::Aggregate;
use domain::{Cart, Catalog, CheckoutProcess, Inventory, Order, Payment, Product, Review};
use eventlog::store::SnapshotPolicy;
use eventlog::{PgEventStore, RecordedEvent};
use sqlx::PgPool;

use crate::personal::{Keyring, KeyringError};
use crate::AnyEvent;

pub struct Stores {
    pub products: PgEventStore<Product>,
    pub inventory: PgEventStore<Inventory>,
    pub carts: PgEventStore<Cart>,
    pub orders: PgEventStore<Order>,
    pub payments: PgEventStore<Payment>,
    pub checkouts: PgEventStore<CheckoutProcess>,
    /// The category tree and the featured list: one stream, [`domain::catalog::CATALOG_STREAM`].
    pub catalog: PgEventStore<Catalog>,
    /// Reviews: one stream per customer and product.
    pub reviews: PgEventStore<Review>,
    /// Seals and opens personal fields; `None`: they are stored in plaintext.
    pub keyring: Option<Arc<Keyring>>,
}

/// The event store of one aggregate type, with its upcasters and snapshot policy.
pub fn event_store<A>(pool: &PgPool) -> PgEventStore<A>
where
    A: Aggregate,
    A::Services: Default,
{
    let store = PgEventStore::<A>::new(pool.clone()).with_upcasters(crate::upcasters(A::TYPE));
    // inventory streams of hot SKUs grow without bound (every reservation is an event); their
    // events carry no personal data (snapshots hold state as it is, unsealed). Every 2,000
    // events, not 200: a hot SKU's state holds every open reservation (1 MB of JSON at 10,000),
    // and writing it every 200 events cost the hot-SKU bench 15-20% of its rate and doubled its
    // p95; a cold load reads at most 2,000 small events after the snapshot.
    if A::TYPE == Inventory::TYPE {
        store.with_snapshots(SnapshotPolicy {
            every: 2_000,
            version: 1,
        })
    } else {
        store
    }
}

/// [`event_store`], sealing personal fields with `keyring`.
pub fn sealed_event_store<A>(pool: &PgPool, keyring: &Arc<Keyring>) -> PgEventStore<A>
where
    A: Aggregate,
    A::Services: Default,
{
    event_store(pool).with_codec(keyring.clone())
}

impl Stores {
    /// Stores that write personal fields in plaintext (tests, benchmarks, and a shop started
    /// without `SHOP_DATA_KEY_MASTER`).
    pub fn new(pool: &PgPool) -> Self {
        Self {
            products: event_store(pool),
            inventory: event_store(pool),
            carts: event_store(pool),
            orders: event_store(pool),
            payments: event_store(pool),
            checkouts: event_store(pool),
            catalog: event_store(pool),
            reviews: event_store(pool),
            keyring: None,
        }
    }

    /// Stores that seal personal fields with `keyring` and open them on load.
    pub fn sealed(pool: &PgPool, keyring: Arc<Keyring>) -> Self {
        Self {
            products: event_store(pool),
            inventory: event_store(pool),
            carts: sealed_event_store(pool, &keyring),
            orders: sealed_event_store(pool, &keyring),
            payments: event_store(pool),
            checkouts: sealed_event_store(pool, &keyring),
            catalog: event_store(pool),
            reviews: event_store(pool),
            keyring: Some(keyring),
        }
    }

    /// A stored event with its personal fields opened (or erased): for readers of the log that
    /// need them, like the checkout saga copying a cart's address into its order. Without a
    /// keyring, plaintext fields are read as they are.
    pub async fn decode_personal(&self, event: &RecordedEvent) -> Result<AnyEvent, KeyringError> {
        match &self.keyring {
            Some(keyring) => keyring.decode(event).await,
            None => Ok(crate::decode_plain(
                &event.aggregate_type,
                &event.event_type,
                &event.event_version,
                event.payload.clone(),
            )?),
        }
    }
}
