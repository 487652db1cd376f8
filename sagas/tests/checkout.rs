//! The checkout saga against the real PostgreSQL, with the local payment gateway: happy path,
//! declines, shortfalls, no oversell under concurrency, payment timeouts, cancellation refunds,
//! reservation expiry, timers that one runner fires once, and the Stripe webhook.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use domain::cart::CartOwner;
use domain::checkout::CheckoutPhase;
use domain::derived_ids::payment_id_of_order;
use domain::order::{CancelledBy, FailureReason, OrderStatus};
use domain::payment::PaymentStatus;
use domain::{
    Address, CartCommand, CartId, Currency, CustomerId, InventoryCommand, Money, OrderCommand,
    OrderId, ProductCommand, Quantity, Sku,
};
use eventlog::testing::TestDatabase;
use eventlog::{Actor, EventMetadata};
use sagas::checkout::{CheckoutConfig, CheckoutSaga};
use sagas::payments::local::LocalGateway;
use sagas::payments::{
    AuthorizeOutcome, AuthorizeRequest, CancelOutcome, GatewayError, PaymentGateway,
};
use sagas::runner::{RunnerConfig, SagaRunner};
use sagas::timers;
use schemas::stores::Stores;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;
use uuid::Uuid;

/// The local gateway with faults switched on by the test: a provider that is away, or a
/// capture that happens at the provider but whose answer is lost.
struct FaultyGateway {
    inner: Arc<LocalGateway>,
    unavailable: AtomicBool,
    lose_capture_answers: AtomicBool,
}

#[async_trait::async_trait]
impl PaymentGateway for FaultyGateway {
    async fn authorize(&self, request: AuthorizeRequest) -> Result<AuthorizeOutcome, GatewayError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(GatewayError::Unavailable("the provider is away".into()));
        }
        self.inner.authorize(request).await
    }

    async fn capture(
        &self,
        provider_ref: &str,
        amount: i64,
        key: &str,
    ) -> Result<(), GatewayError> {
        self.inner.capture(provider_ref, amount, key).await?;
        if self.lose_capture_answers.load(Ordering::SeqCst) {
            return Err(GatewayError::Unavailable("the answer was lost".into()));
        }
        Ok(())
    }

    async fn cancel(&self, provider_ref: &str, key: &str) -> Result<CancelOutcome, GatewayError> {
        self.inner.cancel(provider_ref, key).await
    }

    async fn refund(
        &self,
        provider_ref: &str,
        amount: i64,
        key: &str,
    ) -> Result<String, GatewayError> {
        self.inner.refund(provider_ref, amount, key).await
    }
}

struct Shop {
    db: TestDatabase,
    stores: Arc<Stores>,
    gateway: Arc<LocalGateway>,
    faults: Arc<FaultyGateway>,
    stop: watch::Sender<bool>,
    runner: Option<tokio::task::JoinHandle<()>>,
}

fn meta() -> EventMetadata {
    EventMetadata::new(Actor::system("test"))
}

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").unwrap())
}

fn sku(text: &str) -> Sku {
    Sku::parse(text).unwrap()
}

impl Shop {
    async fn start(config: CheckoutConfig) -> Self {
        Self::start_with(config, RunnerConfig::default()).await
    }

    async fn start_with(config: CheckoutConfig, runner: RunnerConfig) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .with_test_writer()
            .try_init();
        let db = TestDatabase::create(
            eventlog::migrate::MIGRATIONS
                .iter()
                .chain(sagas::MIGRATIONS),
            24,
        )
        .await;
        let stores = Arc::new(Stores::new(&db.pool));
        let gateway = Arc::new(LocalGateway::with_slow_delay(Duration::from_secs(3)));
        let faults = Arc::new(FaultyGateway {
            inner: gateway.clone(),
            unavailable: AtomicBool::new(false),
            lose_capture_answers: AtomicBool::new(false),
        });
        let (stop, watch) = watch::channel(false);
        let mut shop = Self {
            db,
            stores,
            gateway,
            faults,
            stop,
            runner: None,
        };
        shop.runner = Some(shop.spawn_runner(config, runner, watch));
        shop
    }

    fn saga(&self, config: CheckoutConfig) -> CheckoutSaga {
        CheckoutSaga::new(
            self.db.pool.clone(),
            self.stores.clone(),
            self.faults.clone(),
            config,
        )
    }

    fn spawn_runner(
        &self,
        config: CheckoutConfig,
        runner: RunnerConfig,
        stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let saga = self.saga(config);
        let runner = SagaRunner::new(self.db.pool.clone(), saga, runner);
        tokio::spawn(async move {
            runner.run(stop).await.expect("runner");
        })
    }

    async fn product(&self, code: &str, price: i64, units: u32) {
        let create = ProductCommand::Create {
            sku: sku(code),
            name: format!("Product {code}"),
            description: String::new(),
            category: "tests".into(),
            price: eur(price),
            created_at: Utc::now(),
        };
        self.stores
            .products
            .execute(code, create, &meta())
            .await
            .unwrap();
        if units > 0 {
            let receive = InventoryCommand::ReceiveStock {
                sku: sku(code),
                quantity: Quantity::new(units).unwrap(),
            };
            self.stores
                .inventory
                .execute(code, receive, &meta())
                .await
                .unwrap();
        }
    }

    /// A cart with `lines`, checked out with `card`; returns the order id.
    async fn checkout(&self, lines: &[(&str, u32, i64)], card: &str) -> OrderId {
        let cart_id = Uuid::new_v4();
        let cart = cart_id.to_string();
        let carts = &self.stores.carts;
        let create = CartCommand::Create {
            owner: CartOwner::Customer(CustomerId::new(Uuid::new_v4())),
            currency: Currency::parse("EUR").unwrap(),
            created_at: Utc::now(),
        };
        carts.execute(&cart, create, &meta()).await.unwrap();
        let mut priced = Vec::new();
        for (code, quantity, price) in lines {
            let line = domain::cart::CartLine {
                sku: sku(code),
                quantity: Quantity::new(*quantity).unwrap(),
                unit_price: eur(*price),
            };
            let add = CartCommand::AddItem {
                sku: line.sku.clone(),
                quantity: line.quantity,
                unit_price: line.unit_price,
            };
            carts.execute(&cart, add, &meta()).await.unwrap();
            priced.push(line);
        }
        let order_id = OrderId::new(Uuid::new_v4());
        let checkout = CartCommand::CheckOut {
            order_id,
            priced_lines: priced,
            shipping_address: Address::new("A", "1 Main St", None, "Berlin", "10115", "DE")
                .unwrap(),
            payment_method: card.into(),
            checked_out_at: Utc::now(),
        };
        carts.execute(&cart, checkout, &meta()).await.unwrap();
        let _ = CartId::new(cart_id);
        order_id
    }

    /// Waits until the checkout of `order` settles in one of `phases`.
    async fn settled(&self, order: OrderId, phases: &[CheckoutPhase]) -> CheckoutPhase {
        for _ in 0..1_500 {
            let process = self
                .stores
                .checkouts
                .load(&order.to_string())
                .await
                .unwrap()
                .aggregate;
            if let Some(phase) = process.checkout().map(|c| c.phase) {
                if phases.contains(&phase) {
                    return phase;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("checkout {order} did not reach {phases:?}");
    }

    async fn order_status(&self, order: OrderId) -> (OrderStatus, Option<FailureReason>) {
        let order = self
            .stores
            .orders
            .load(&order.to_string())
            .await
            .unwrap()
            .aggregate;
        let placed = order.placed().expect("the order was placed");
        (placed.status, order.failure().cloned())
    }

    async fn stock(&self, code: &str) -> (u64, u64) {
        let stock = self.stores.inventory.load(code).await.unwrap().aggregate;
        (stock.on_hand(), stock.available())
    }

    async fn payment_status(&self, order: OrderId) -> Option<PaymentStatus> {
        self.stores
            .payments
            .load(&payment_id_of_order(order).to_string())
            .await
            .unwrap()
            .aggregate
            .status()
    }

    async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(runner) = self.runner.take() {
            let _ = runner.await;
        }
        self.db.drop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_happy_checkout_is_confirmed_stock_committed_and_payment_captured() {
    let shop = Shop::start(CheckoutConfig::default()).await;
    shop.product("MUG-1", 1200, 10).await;
    shop.product("CUP-2", 800, 5).await;
    let order = shop
        .checkout(&[("MUG-1", 2, 1200), ("CUP-2", 1, 800)], "pm_card_visa")
        .await;

    assert_eq!(
        shop.settled(order, &[CheckoutPhase::Completed, CheckoutPhase::Failed])
            .await,
        CheckoutPhase::Completed
    );
    let (status, _) = shop.order_status(order).await;
    assert_eq!(status, OrderStatus::Confirmed);
    assert_eq!(shop.stock("MUG-1").await, (8, 8));
    assert_eq!(shop.stock("CUP-2").await, (4, 4));
    assert_eq!(
        shop.payment_status(order).await,
        Some(PaymentStatus::Captured)
    );
    let placed = shop
        .stores
        .orders
        .load(&order.to_string())
        .await
        .unwrap()
        .aggregate;
    let placed = placed.placed().unwrap();
    // 32.00 goods + 19% VAT (6.08) + 4.99 shipping
    assert_eq!(placed.totals.total, eur(4307));
    assert_eq!(placed.order_number.0, 1);
    let intent = &shop.gateway.intents().await.unwrap()[0];
    assert_eq!(intent.amount_minor, 4307);
    assert_eq!(intent.captured_minor, 4307);
    // every command the saga sent carries the correlation id of the cart's checkout
    let correlations: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT metadata->>'correlation_id' FROM events
          WHERE metadata->>'actor_id' = 'saga:checkout' AND aggregate_type IN ('order', 'payment', 'inventory')",
    )
    .fetch_all(&shop.db.pool)
    .await
    .unwrap();
    let checkout_correlation: String = sqlx::query_scalar(
        "SELECT metadata->>'correlation_id' FROM events WHERE event_type = 'CartCheckedOut'",
    )
    .fetch_one(&shop.db.pool)
    .await
    .unwrap();
    assert_eq!(correlations, vec![checkout_correlation]);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_card_fails_the_order_and_releases_the_stock() {
    let shop = Shop::start(CheckoutConfig::default()).await;
    shop.product("MUG-1", 1200, 10).await;
    let order = shop
        .checkout(
            &[("MUG-1", 3, 1200)],
            "pm_card_chargeDeclinedInsufficientFunds",
        )
        .await;
    assert_eq!(
        shop.settled(order, &[CheckoutPhase::Completed, CheckoutPhase::Failed])
            .await,
        CheckoutPhase::Failed
    );
    let (status, reason) = shop.order_status(order).await;
    assert_eq!(status, OrderStatus::Failed);
    assert_eq!(
        reason,
        Some(FailureReason::PaymentDeclined {
            message: "Your card has insufficient funds.".into()
        })
    );
    assert_eq!(
        shop.stock("MUG-1").await,
        (10, 10),
        "the reservation was released"
    );
    assert_eq!(
        shop.payment_status(order).await,
        Some(PaymentStatus::Failed)
    );
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shortfall_fails_the_order_naming_the_sku_and_releases_the_other_lines() {
    let shop = Shop::start(CheckoutConfig::default()).await;
    shop.product("MUG-1", 1200, 10).await;
    shop.product("RARE-1", 9900, 1).await;
    let order = shop
        .checkout(&[("MUG-1", 2, 1200), ("RARE-1", 2, 9900)], "pm_card_visa")
        .await;
    assert_eq!(
        shop.settled(order, &[CheckoutPhase::Completed, CheckoutPhase::Failed])
            .await,
        CheckoutPhase::Failed
    );
    let (status, reason) = shop.order_status(order).await;
    assert_eq!(status, OrderStatus::Failed);
    assert_eq!(
        reason,
        Some(FailureReason::OutOfStock { sku: sku("RARE-1") })
    );
    assert_eq!(shop.stock("MUG-1").await, (10, 10));
    assert_eq!(shop.stock("RARE-1").await, (1, 1));
    assert_eq!(
        shop.gateway.calls().await.unwrap().authorize,
        0,
        "no payment was attempted"
    );
    let refused: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'ReservationRefused'")
            .fetch_one(&shop.db.pool)
            .await
            .unwrap();
    assert_eq!(refused, 1, "the shortfall is an event");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checkouts_for_the_last_units_never_oversell() {
    let shop = Shop::start(CheckoutConfig::default()).await;
    shop.product("HOT-1", 1000, 50).await;
    let mut orders = Vec::new();
    let checkouts: Vec<_> = (0..200)
        .map(|_| async { shop.checkout(&[("HOT-1", 1, 1000)], "pm_card_visa").await })
        .collect();
    for order in futures_join_all(checkouts).await {
        orders.push(order);
    }
    let mut confirmed = 0;
    for order in &orders {
        match shop
            .settled(*order, &[CheckoutPhase::Completed, CheckoutPhase::Failed])
            .await
        {
            CheckoutPhase::Completed => confirmed += 1,
            _ => {
                let (status, reason) = shop.order_status(*order).await;
                assert_eq!(status, OrderStatus::Failed);
                assert_eq!(
                    reason,
                    Some(FailureReason::OutOfStock { sku: sku("HOT-1") })
                );
            }
        }
    }
    assert_eq!(confirmed, 50);
    assert_eq!(shop.stock("HOT-1").await, (0, 0));
    let stock = shop.stores.inventory.load("HOT-1").await.unwrap().aggregate;
    assert!(
        stock.reservations().is_empty(),
        "every refused checkout released what it held"
    );
    let numbers: Vec<i64> = sqlx::query_scalar("SELECT number FROM order_numbers ORDER BY number")
        .fetch_all(&shop.db.pool)
        .await
        .unwrap();
    assert_eq!(
        numbers,
        (1..=200).collect::<Vec<i64>>(),
        "order numbers without gaps"
    );
    shop.stop().await;
}

/// Runs futures concurrently on the current task.
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (index, future) in pinned.iter_mut().enumerate() {
            if results[index].is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(output) => results[index] = Some(output),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().map(|r| r.expect("ready")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_not_authorized_in_time_fails_the_checkout() {
    let shop = Shop::start(CheckoutConfig {
        payment_timeout: Duration::from_secs(1),
        ..CheckoutConfig::default()
    })
    .await;
    shop.product("MUG-1", 1200, 10).await;
    let order = shop.checkout(&[("MUG-1", 1, 1200)], "pm_card_slow").await;
    assert_eq!(
        shop.settled(order, &[CheckoutPhase::Completed, CheckoutPhase::Failed])
            .await,
        CheckoutPhase::Failed
    );
    let (status, reason) = shop.order_status(order).await;
    assert_eq!(
        (status, reason),
        (OrderStatus::Failed, Some(FailureReason::PaymentTimedOut))
    );
    assert_eq!(shop.stock("MUG-1").await, (10, 10));
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_confirmed_order_refunds_the_payment_and_returns_the_stock() {
    let shop = Shop::start(CheckoutConfig::default()).await;
    shop.product("MUG-1", 1200, 10).await;
    let order = shop.checkout(&[("MUG-1", 2, 1200)], "pm_card_visa").await;
    assert_eq!(
        shop.settled(order, &[CheckoutPhase::Completed, CheckoutPhase::Failed])
            .await,
        CheckoutPhase::Completed
    );
    assert_eq!(shop.stock("MUG-1").await, (8, 8));
    let cancel = OrderCommand::Cancel {
        reason: "changed my mind".into(),
        by: CancelledBy::Customer,
        at: Utc::now(),
    };
    shop.stores
        .orders
        .execute(&order.to_string(), cancel, &meta())
        .await
        .unwrap();
    assert_eq!(
        shop.settled(order, &[CheckoutPhase::Closed]).await,
        CheckoutPhase::Closed
    );
    assert_eq!(
        shop.stock("MUG-1").await,
        (10, 10),
        "the goods went back on the shelf"
    );
    assert_eq!(
        shop.payment_status(order).await,
        Some(PaymentStatus::Refunded)
    );
    let intent = &shop.gateway.intents().await.unwrap()[0];
    assert_eq!(intent.refunded_minor, intent.captured_minor);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_that_lapses_is_released_by_its_timer() {
    let shop = Shop::start(CheckoutConfig::default()).await;
    shop.product("MUG-1", 1200, 10).await;
    let order = OrderId::new(Uuid::new_v4());
    let reserve = InventoryCommand::Reserve {
        order_id: order,
        quantity: Quantity::new(4).unwrap(),
        expires_at: Utc::now(),
    };
    shop.stores
        .inventory
        .execute("MUG-1", reserve, &meta())
        .await
        .unwrap();
    assert_eq!(shop.stock("MUG-1").await, (10, 6));
    sagas::timers::schedule(
        &shop.db.pool,
        sagas::checkout::RESERVATION_EXPIRY,
        &format!("MUG-1/{order}"),
        Utc::now(),
        &serde_json::json!({}),
    )
    .await
    .unwrap();
    for _ in 0..200 {
        if shop.stock("MUG-1").await == (10, 10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(shop.stock("MUG-1").await, (10, 10));
    shop.stop().await;
}

#[tokio::test]
async fn two_runners_never_claim_the_same_timer() {
    let db = TestDatabase::create(
        eventlog::migrate::MIGRATIONS
            .iter()
            .chain(sagas::MIGRATIONS),
        4,
    )
    .await;
    for n in 0..40 {
        sagas::timers::schedule(
            &db.pool,
            "test",
            &format!("t{n}"),
            Utc::now(),
            &serde_json::json!({}),
        )
        .await
        .unwrap();
    }
    let lease = Duration::from_secs(30);
    let (a, b) = tokio::join!(
        sagas::timers::claim_due(&db.pool, 25, lease),
        sagas::timers::claim_due(&db.pool, 25, lease)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 40);
    assert!(
        a.iter().all(|t| !b.iter().any(|u| u.key == t.key)),
        "disjoint claims"
    );
    // a claim that was lost cannot complete the timer
    let mut stale = a[0].clone();
    stale.claim = Uuid::new_v4();
    assert!(!sagas::timers::complete(&db.pool, &stale).await.unwrap());
    assert!(sagas::timers::complete(&db.pool, &a[0]).await.unwrap());
    assert!(
        sagas::timers::claim_due(&db.pool, 100, lease)
            .await
            .unwrap()
            .is_empty(),
        "claimed timers wait for their lease"
    );
    db.drop().await;
}

// ---------------------------------------------------------------------------------------------
// The Stripe webhook

use sagas::payments::webhook::sign;

const WEBHOOK_SECRET: &str = "whsec_test_secret";

async fn webhook_server(shop: &Shop, secret: Option<&str>) -> String {
    let router = sagas::webhooks::router(sagas::webhooks::WebhookState {
        pool: shop.db.pool.clone(),
        stores: shop.stores.clone(),
        secret: secret.map(Arc::from),
        livemode: false,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}/webhooks/stripe")
}

fn stripe_event(id: &str, kind: &str, order: OrderId, status: &str, amount: i64) -> String {
    serde_json::json!({
        "id": id, "object": "event", "type": kind, "created": Utc::now().timestamp(), "livemode": false,
        "data": {"object": {
            "id": format!("pi_{}", order.as_uuid().simple()), "object": "payment_intent", "status": status,
            "amount": amount, "amount_capturable": if status == "requires_capture" { amount } else { 0 },
            "amount_received": if status == "succeeded" { amount } else { 0 },
            "metadata": {"order_id": order.to_string()},
            "last_payment_error": if kind == "payment_intent.payment_failed" {
                serde_json::json!({"message": "Your card was declined.", "code": "card_declined"})
            } else { serde_json::Value::Null }
        }}
    })
    .to_string()
}

async fn post_webhook(
    url: &str,
    payload: &str,
    signature: &str,
) -> (reqwest::StatusCode, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(url)
        .header("Stripe-Signature", signature)
        .header("content-type", "application/json")
        .body(payload.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or_default())
}

/// A refused signature is the APIs' `validation` problem: 422, problem+json, code `validation`.
fn assert_refused((status, body): (reqwest::StatusCode, serde_json::Value)) {
    assert_eq!(status, reqwest::StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "validation", "{body}");
    assert_eq!(body["status"], 422, "{body}");
}

async fn requested_payment(shop: &Shop, amount: i64) -> OrderId {
    let order = OrderId::new(Uuid::new_v4());
    let request = domain::PaymentCommand::Request {
        order_id: order,
        amount: eur(amount),
        method: "pm_card_visa".into(),
        requested_at: Utc::now(),
    };
    shop.stores
        .payments
        .execute(&payment_id_of_order(order).to_string(), request, &meta())
        .await
        .unwrap();
    order
}

async fn payment_events(shop: &Shop) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'payment'")
        .fetch_one(&shop.db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_webhooks_are_verified_deduplicated_and_applied_in_any_order() {
    let shop = Shop::start(CheckoutConfig::default()).await;
    let url = webhook_server(&shop, Some(WEBHOOK_SECRET)).await;
    let now = Utc::now().timestamp();
    let order = requested_payment(&shop, 4307).await;
    let authorized = stripe_event(
        "evt_1",
        "payment_intent.amount_capturable_updated",
        order,
        "requires_capture",
        4307,
    );
    let before = payment_events(&shop).await;

    // forged, stale and unsigned webhooks are refused and change nothing
    let forged = sign(authorized.as_bytes(), "whsec_wrong", now);
    assert_refused(post_webhook(&url, &authorized, &forged).await);
    let stale = sign(authorized.as_bytes(), WEBHOOK_SECRET, now - 600);
    assert_refused(post_webhook(&url, &authorized, &stale).await);
    assert_refused(post_webhook(&url, &authorized, "").await);
    let tampered = authorized.replace("4307", "1");
    let signed_original = sign(authorized.as_bytes(), WEBHOOK_SECRET, now);
    assert_refused(post_webhook(&url, &tampered, &signed_original).await);
    assert_eq!(payment_events(&shop).await, before);

    // a valid one applies; with several v1 signatures, one valid is enough
    let several = format!(
        "{},v1={}",
        sign(authorized.as_bytes(), WEBHOOK_SECRET, now),
        "00".repeat(32)
    );
    let (status, body) = post_webhook(&url, &authorized, &several).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (reqwest::StatusCode::OK, Some("applied"))
    );
    assert_eq!(
        shop.payment_status(order).await,
        Some(PaymentStatus::Authorized)
    );
    // a replay of the same event (Stripe retries) changes nothing
    let (status, body) = post_webhook(&url, &authorized, &signed_original).await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (reqwest::StatusCode::OK, Some("duplicate"))
    );
    assert_eq!(payment_events(&shop).await, before + 1);

    // out of order: succeeded before amount_capturable_updated ends captured
    let early = requested_payment(&shop, 1000).await;
    let succeeded = stripe_event(
        "evt_2",
        "payment_intent.succeeded",
        early,
        "succeeded",
        1000,
    );
    assert_eq!(
        post_webhook(
            &url,
            &succeeded,
            &sign(succeeded.as_bytes(), WEBHOOK_SECRET, now)
        )
        .await
        .0,
        reqwest::StatusCode::OK
    );
    let late = stripe_event(
        "evt_3",
        "payment_intent.amount_capturable_updated",
        early,
        "requires_capture",
        1000,
    );
    let (status, _) = post_webhook(&url, &late, &sign(late.as_bytes(), WEBHOOK_SECRET, now)).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(
        shop.payment_status(early).await,
        Some(PaymentStatus::Captured)
    );

    // a failure
    let failing = requested_payment(&shop, 500).await;
    let failed = stripe_event(
        "evt_4",
        "payment_intent.payment_failed",
        failing,
        "requires_payment_method",
        500,
    );
    assert_eq!(
        post_webhook(&url, &failed, &sign(failed.as_bytes(), WEBHOOK_SECRET, now))
            .await
            .0,
        reqwest::StatusCode::OK
    );
    assert_eq!(
        shop.payment_status(failing).await,
        Some(PaymentStatus::Failed)
    );

    // without a configured secret, every webhook is refused
    let closed = webhook_server(&shop, None).await;
    assert_eq!(
        post_webhook(
            &closed,
            &failed,
            &sign(failed.as_bytes(), WEBHOOK_SECRET, now)
        )
        .await
        .0,
        reqwest::StatusCode::SERVICE_UNAVAILABLE
    );
    shop.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Notifications

/// A local SMTP server that keeps what it receives.
async fn smtp_sink() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = received.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 sink ESMTP\r\n").await.unwrap();
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(body) = data.as_mut() {
                        if line == "." {
                            store.lock().unwrap().push(std::mem::take(body));
                            data = None;
                            write.write_all(b"250 OK queued\r\n").await.unwrap();
                        } else {
                            body.push_str(&line);
                            body.push('\n');
                        }
                        continue;
                    }
                    let verb = line.split_whitespace().next().unwrap_or("").to_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250 sink\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await.unwrap();
                            break;
                        }
                        _ => b"250 OK\r\n",
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (format!("smtp://127.0.0.1:{}", addr.port()), received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_confirmation_is_mailed_once_however_often_its_event_is_read() {
    let db = TestDatabase::create(
        eventlog::migrate::MIGRATIONS
            .iter()
            .chain(command_api::MIGRATIONS)
            .chain(sagas::MIGRATIONS),
        4,
    )
    .await;
    let stores = Stores::new(&db.pool);
    let customer = accounts::create(
        &db.pool,
        "ada@example.com",
        "Ada",
        "x",
        accounts::Role::Customer,
    )
    .await
    .unwrap();
    let order = OrderId::new(Uuid::new_v4());
    let id = order.to_string();
    let place = OrderCommand::Place {
        order_number: domain::OrderNumber(17),
        customer: Some(CustomerId::new(customer)),
        cart_id: CartId::new(Uuid::new_v4()),
        lines: vec![domain::order::OrderLine {
            sku: sku("MUG-1"),
            name: "Mug".into(),
            quantity: Quantity::new(1).unwrap(),
            unit_price: eur(1200),
        }],
        currency: Currency::parse("EUR").unwrap(),
        discount: eur(0),
        tax: eur(0),
        shipping: eur(0),
        shipping_address: Address::new("Ada", "1 Main St", None, "Berlin", "10115", "DE").unwrap(),
        payment_method: "pm_card_visa".into(),
        placed_at: Utc::now(),
    };
    stores.orders.execute(&id, place, &meta()).await.unwrap();
    stores
        .orders
        .execute(
            &id,
            OrderCommand::MarkStockReserved { at: Utc::now() },
            &meta(),
        )
        .await
        .unwrap();
    let confirm = OrderCommand::Confirm {
        payment_id: payment_id_of_order(order),
        at: Utc::now(),
    };
    stores.orders.execute(&id, confirm, &meta()).await.unwrap();

    let (smtp_url, received) = smtp_sink().await;
    let notifier = sagas::notifier::Notifier::new(
        db.pool.clone(),
        sagas::notifier::NotifierConfig {
            smtp_url,
            from: "shop <orders@shop.test>".into(),
            idle: Duration::from_millis(10),
        },
    )
    .unwrap();
    for _ in 0..100 {
        notifier.enqueue_batch(100).await.unwrap();
        if notifier.send_due(10).await.unwrap() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let messages = received.lock().unwrap();
        assert_eq!(messages.len(), 1, "one message for the confirmation");
        assert!(
            messages[0].contains("To: ada@example.com"),
            "{}",
            messages[0]
        );
        assert!(
            messages[0].contains("Your order is confirmed (order #17)"),
            "{}",
            messages[0]
        );
    }
    // reading the log again (a rebuilt checkpoint, a redelivery) enqueues nothing new
    eventlog::checkpoint::reset(&db.pool, sagas::notifier::SUBSCRIPTION)
        .await
        .unwrap();
    assert!(notifier.enqueue_batch(100).await.unwrap() > 0);
    assert_eq!(notifier.send_due(10).await.unwrap(), 0);
    assert_eq!(received.lock().unwrap().len(), 1);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_whose_answer_was_lost_is_refunded_when_the_order_is_cancelled() {
    let shop = Shop::start(CheckoutConfig::default()).await;
    shop.product("MUG-1", 1200, 10).await;
    // the provider captures, but the saga never hears it: the capture step keeps retrying
    shop.faults
        .lose_capture_answers
        .store(true, Ordering::SeqCst);
    let order = shop.checkout(&[("MUG-1", 2, 1200)], "pm_card_visa").await;
    for _ in 0..500 {
        let intents = shop.gateway.intents().await.unwrap();
        if intents.first().is_some_and(|i| i.captured_minor > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancel = OrderCommand::Cancel {
        reason: "changed my mind".into(),
        by: CancelledBy::Customer,
        at: Utc::now(),
    };
    shop.stores
        .orders
        .execute(&order.to_string(), cancel, &meta())
        .await
        .unwrap();
    assert_eq!(
        shop.settled(order, &[CheckoutPhase::Closed]).await,
        CheckoutPhase::Closed
    );
    let intent = &shop.gateway.intents().await.unwrap()[0];
    assert!(intent.captured_minor > 0, "the provider did capture");
    assert_eq!(
        intent.refunded_minor, intent.captured_minor,
        "everything captured went back to the customer"
    );
    assert_eq!(
        shop.payment_status(order).await,
        Some(PaymentStatus::Refunded)
    );
    assert_eq!(shop.stock("MUG-1").await, (10, 10));
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_up_while_the_timer_is_held_is_not_lost() {
    let shop = Shop::start_with(
        CheckoutConfig::default(),
        RunnerConfig {
            concurrency: 0,
            ..RunnerConfig::default()
        },
    )
    .await;
    let _ = shop.stop.send(true); // this test claims timers itself
    let pool = &shop.db.pool;
    let past = Utc::now() - chrono::Duration::seconds(1);
    let payload = serde_json::json!({});
    for key in ["completed", "rescheduled"] {
        timers::schedule(pool, "test", key, past, &payload)
            .await
            .unwrap();
    }
    let claimed = timers::claim_due(pool, 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    // both are woken while held (an observation recorded during the drive)
    for key in ["completed", "rescheduled"] {
        timers::schedule(pool, "test", key, Utc::now(), &payload)
            .await
            .unwrap();
    }
    for timer in &claimed {
        if timer.key == "completed" {
            assert!(timers::complete(pool, timer).await.unwrap());
        } else {
            let later = Utc::now() + chrono::Duration::hours(1);
            assert!(timers::reschedule(pool, timer, later).await.unwrap());
        }
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    let again = timers::claim_due(pool, 10, Duration::from_secs(60))
        .await
        .unwrap();
    let mut keys: Vec<_> = again.iter().map(|t| t.key.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["completed", "rescheduled"], "both wake-ups fire");
    // without a wake in between, completing removes it
    for timer in &again {
        assert!(timers::complete(pool, timer).await.unwrap());
    }
    assert_eq!(timers::due_count(pool).await.unwrap(), 0);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_drives_a_checkout_that_lost_its_timer() {
    let shop = Shop::start(CheckoutConfig::default()).await;
    let _ = shop.stop.send(true); // this test plays the runner itself
    tokio::time::sleep(Duration::from_millis(300)).await;
    shop.product("MUG-1", 1200, 10).await;
    let order = shop.checkout(&[("MUG-1", 1, 1200)], "pm_card_visa").await;
    let saga = shop.saga(CheckoutConfig::default());
    // the gap-safe reader shows it once no older transaction (of any test) is open
    let mut checked_out = None;
    for _ in 0..250 {
        let log =
            eventlog::log::read_after(&shop.db.pool, eventlog::log::LogPosition::START, 1_000)
                .await
                .unwrap();
        checked_out = log.into_iter().find(|e| e.event_type == "CartCheckedOut");
        if checked_out.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let checked_out = &checked_out.expect("the cart was checked out");
    // the checkout starts and schedules its drive, which is then lost
    saga.on_event(checked_out).await.unwrap();
    sqlx::query("DELETE FROM timers")
        .execute(&shop.db.pool)
        .await
        .unwrap();
    assert_eq!(saga.sweep().await.unwrap(), 1, "the open checkout is found");
    assert_eq!(saga.sweep().await.unwrap(), 0, "it has a timer now");
    assert_eq!(
        saga.drive(order).await.unwrap(),
        sagas::checkout::Driven::Settled
    );
    sqlx::query("DELETE FROM timers")
        .execute(&shop.db.pool)
        .await
        .unwrap();
    assert_eq!(
        saga.sweep().await.unwrap(),
        0,
        "a settled checkout is left alone"
    );
    assert_eq!(
        shop.settled(order, &[CheckoutPhase::Completed]).await,
        CheckoutPhase::Completed
    );
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_that_keeps_failing_is_parked_for_staff_and_resumes() {
    let config = CheckoutConfig {
        max_attempts: 3,
        ..CheckoutConfig::default()
    };
    let shop = Shop::start(config).await;
    shop.product("MUG-1", 1200, 10).await;
    shop.faults.unavailable.store(true, Ordering::SeqCst);
    let order = shop.checkout(&[("MUG-1", 1, 1200)], "pm_card_visa").await;
    let mut parked = Vec::new();
    for _ in 0..1_000 {
        parked = timers::parked(&shop.db.pool).await.unwrap();
        if !parked.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(parked.len(), 1, "the checkout was parked");
    assert_eq!(parked[0].key, order.to_string());
    assert!(parked[0].attempts >= 3);
    assert!(parked[0].reason.contains("away"), "{}", parked[0].reason);
    assert_eq!(timers::due_count(&shop.db.pool).await.unwrap(), 0);
    // staff fix the cause and resume it
    shop.faults.unavailable.store(false, Ordering::SeqCst);
    assert!(
        timers::resume(&shop.db.pool, "checkout", &order.to_string())
            .await
            .unwrap()
    );
    assert_eq!(
        shop.settled(order, &[CheckoutPhase::Completed]).await,
        CheckoutPhase::Completed
    );
    assert_eq!(timers::parked_count(&shop.db.pool).await.unwrap(), 0);
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_follower_stands_again_when_its_lock_connection_breaks() {
    let shop = Shop::start_with(
        CheckoutConfig::default(),
        RunnerConfig {
            leader_check: Duration::from_millis(100),
            ..RunnerConfig::default()
        },
    )
    .await;
    shop.product("MUG-1", 1200, 10).await;
    let holder = || async {
        sqlx::query_scalar::<_, i32>(
            "SELECT pid FROM pg_locks
              WHERE locktype = 'advisory' AND objid = 7300002 AND granted
                AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_optional(&shop.db.pool)
        .await
        .unwrap()
    };
    let mut first = None;
    for _ in 0..500 {
        first = holder().await;
        if first.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = first.expect("a runner leads");
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(first)
        .execute(&shop.db.pool)
        .await
        .unwrap();
    let mut second = None;
    for _ in 0..500 {
        second = holder().await.filter(|pid| *pid != first);
        if second.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        second.is_some(),
        "the lock was taken again on a new connection"
    );
    // and the new leader follows the log
    let order = shop.checkout(&[("MUG-1", 1, 1200)], "pm_card_visa").await;
    assert_eq!(
        shop.settled(order, &[CheckoutPhase::Completed]).await,
        CheckoutPhase::Completed
    );
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_of_the_other_mode_or_another_intent_change_nothing() {
    let shop = Shop::start(CheckoutConfig::default()).await;
    let url = webhook_server(&shop, Some(WEBHOOK_SECRET)).await;
    let now = Utc::now().timestamp();
    let order = requested_payment(&shop, 1000).await;
    // a live-mode event reaching a test-mode shop
    let mut live: serde_json::Value = serde_json::from_str(&stripe_event(
        "evt_live",
        "payment_intent.succeeded",
        order,
        "succeeded",
        1000,
    ))
    .unwrap();
    live["livemode"] = true.into();
    let live = live.to_string();
    let (status, body) =
        post_webhook(&url, &live, &sign(live.as_bytes(), WEBHOOK_SECRET, now)).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(body["outcome"], "other mode");
    assert_eq!(
        shop.payment_status(order).await,
        Some(PaymentStatus::Requested)
    );

    // authorized with its own intent
    let authorized = stripe_event(
        "evt_auth",
        "payment_intent.amount_capturable_updated",
        order,
        "requires_capture",
        1000,
    );
    let (_, body) = post_webhook(
        &url,
        &authorized,
        &sign(authorized.as_bytes(), WEBHOOK_SECRET, now),
    )
    .await;
    assert_eq!(body["outcome"], "applied");
    // an event of another intent carrying this order's metadata
    let mut other: serde_json::Value = serde_json::from_str(&stripe_event(
        "evt_other",
        "payment_intent.succeeded",
        order,
        "succeeded",
        1000,
    ))
    .unwrap();
    other["data"]["object"]["id"] = "pi_someone_else".into();
    let other = other.to_string();
    let (status, body) =
        post_webhook(&url, &other, &sign(other.as_bytes(), WEBHOOK_SECRET, now)).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(body["outcome"], "other intent");
    assert_eq!(
        shop.payment_status(order).await,
        Some(PaymentStatus::Authorized),
        "not captured by another intent's event"
    );
    shop.stop().await;
}

/// How many events of `event_type` the stream `aggregate_type`/`id` has.
async fn events_of(shop: &Shop, aggregate_type: &str, id: &str, event_type: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 AND event_type = $3",
    )
    .bind(aggregate_type)
    .bind(id)
    .bind(event_type)
    .fetch_one(&shop.db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steps_command_and_its_recording_are_written_together_or_not_at_all() {
    let shop = Shop::start(CheckoutConfig::default()).await;
    let _ = shop.stop.send(true); // this test plays the runner itself
    tokio::time::sleep(Duration::from_millis(300)).await;
    shop.product("MUG-1", 1200, 10).await;
    let order = shop.checkout(&[("MUG-1", 1, 1200)], "pm_card_visa").await;
    let saga = shop.saga(CheckoutConfig::default());
    let mut checked_out = None;
    for _ in 0..250 {
        let log =
            eventlog::log::read_after(&shop.db.pool, eventlog::log::LogPosition::START, 1_000)
                .await
                .unwrap();
        checked_out = log.into_iter().find(|e| e.event_type == "CartCheckedOut");
        if checked_out.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    saga.on_event(&checked_out.expect("the cart was checked out"))
        .await
        .unwrap();

    // the process dies (here: the database refuses) as the confirmation's recording is written
    sqlx::query(
        "CREATE FUNCTION crash_on_confirmation_recording() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'injected crash'; END $$",
    )
    .execute(&shop.db.pool)
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER crash BEFORE INSERT ON events FOR EACH ROW
           WHEN (NEW.event_type = 'CheckoutOrderConfirmed')
           EXECUTE FUNCTION crash_on_confirmation_recording()",
    )
    .execute(&shop.db.pool)
    .await
    .unwrap();
    assert!(saga.drive(order).await.is_err());
    let (id, payment) = (order.to_string(), payment_id_of_order(order).to_string());
    assert_eq!(
        (
            events_of(&shop, "order", &id, "OrderConfirmed").await,
            events_of(&shop, "checkout", &id, "CheckoutOrderConfirmed").await
        ),
        (0, 0),
        "the confirmation and its recording: both absent"
    );
    assert_eq!(
        events_of(&shop, "payment", &payment, "PaymentAuthorized").await,
        events_of(&shop, "checkout", &id, "CheckoutPaymentAuthorized").await,
        "the authorization and its recording: both present or both absent"
    );

    // restarted without the fault: each step's command and its recording exactly once
    sqlx::query("DROP TRIGGER crash ON events")
        .execute(&shop.db.pool)
        .await
        .unwrap();
    assert_eq!(
        saga.drive(order).await.unwrap(),
        sagas::checkout::Driven::Settled
    );
    for (aggregate_type, stream, event_type) in [
        ("order", &id, "OrderPlaced"),
        ("checkout", &id, "CheckoutOrderPlaced"),
        ("inventory", &"MUG-1".to_owned(), "StockReserved"),
        ("checkout", &id, "CheckoutStockReserved"),
        ("payment", &payment, "PaymentAuthorized"),
        ("checkout", &id, "CheckoutPaymentAuthorized"),
        ("order", &id, "OrderConfirmed"),
        ("checkout", &id, "CheckoutOrderConfirmed"),
        ("payment", &payment, "PaymentCaptured"),
        ("checkout", &id, "CheckoutPaymentCaptured"),
        ("checkout", &id, "CheckoutCompleted"),
    ] {
        assert_eq!(
            events_of(&shop, aggregate_type, stream, event_type).await,
            1,
            "{aggregate_type}/{stream} {event_type}"
        );
    }
    let report = eventlog::audit::verify_all(&shop.db.pool, |_| {})
        .await
        .unwrap();
    assert_eq!(report.broken_links, 0);
    shop.stop().await;
}
