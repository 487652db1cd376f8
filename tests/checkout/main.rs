//! Checkout end to end: the command API (started in process with `shop::app::start`) and real
//! `shop saga-runner` processes, the HTTP API, the real PostgreSQL. A happy checkout is confirmed and captured; a declined card fails
//! with its stock released; 200 concurrent checkouts for 50 units confirm exactly 50; killing the
//! saga runner (SIGKILL) mid-flow and starting it again completes every checkout exactly once.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::order::{FailureReason, OrderStatus};
use domain::payment::PaymentStatus;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

#[path = "../support/mod.rs"]
mod support;

mod faults;
mod privacy;

use support::{E2eDatabase, ShopProcess};

const JWT_SECRET: &str = "end-to-end-tests-only-secret-0123456789";
const STAFF_PASSWORD: &str = "staff password for tests";

/// The flags and environment every process of a stack runs with.
const SETTINGS: &[(&str, &str)] = &[
    ("SHOP_JWT_SECRET", JWT_SECRET),
    ("SHOP_PAYMENT_GATEWAY", "local"),
    ("SHOP_CHECKOUT_RATE_PER_MINUTE", "1000000"),
    ("SHOP_AUTH_RATE_PER_MINUTE", "1000000"),
    ("SHOP_LOCAL_SLOW_CARD_MS", "300"),
    ("SHOP_DB_MAX_CONNECTIONS", "24"),
];

/// A seeded database with a staff account, the command API started in this test's process
/// (`shop::app::start`, port 0) and a `shop saga-runner` process (which tests kill).
struct Stack {
    database: E2eDatabase,
    url: String,
    pool: PgPool,
    /// The in-process command API (aborted when dropped).
    api: Mutex<Option<shop::app::Started>>,
    runner: Option<ShopProcess>,
    base: String,
    client: reqwest::Client,
    /// SHOP_DATA_KEY_MASTER of every process, when personal data is sealed.
    master_key: Option<String>,
}

fn shop(url: &str) -> Command {
    let mut command = support::shop(url);
    command.envs(SETTINGS.iter().copied());
    command
}

/// [`shop`], with SHOP_DATA_KEY_MASTER when given.
fn shop_with(url: &str, master_key: Option<&str>) -> Command {
    let mut command = shop(url);
    if let Some(master_key) = master_key {
        command.env("SHOP_DATA_KEY_MASTER", master_key);
    }
    command
}

impl Stack {
    async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A stack whose processes seal personal data with `master_key`.
    async fn start_with(master_key: Option<String>) -> Self {
        let shop = |url: &str| shop_with(url, master_key.as_deref());
        let database = E2eDatabase::new();
        let url = database.url.clone();
        assert!(shop(&url).arg("migrate").output().unwrap().status.success());
        assert!(shop(&url).arg("seed").output().unwrap().status.success());
        let added = shop(&url)
            .args([
                "user",
                "add",
                "--email",
                "boss@shop.test",
                "--name",
                "Boss",
                "--role",
                "staff",
            ])
            .env("SHOP_USER_PASSWORD", STAFF_PASSWORD)
            .output()
            .unwrap();
        assert!(added.status.success(), "{added:?}");
        // the command API needs no process of its own: no test kills it
        let mut flags: Vec<String> = vec![
            "--database-url".into(),
            url.clone(),
            "--command-api-addr".into(),
            "127.0.0.1:0".into(),
        ];
        for (name, value) in SETTINGS {
            let flag = name
                .trim_start_matches("SHOP_")
                .to_lowercase()
                .replace('_', "-");
            flags.extend([format!("--{flag}"), (*value).to_owned()]);
        }
        if let Some(master_key) = &master_key {
            flags.extend(["--data-key-master".to_owned(), master_key.clone()]);
        }
        let config = shop::config::RoleConfig::from_flags(&flags).unwrap();
        let api = shop::app::start(&config, shop::app::Roles::CommandApi)
            .await
            .unwrap();
        let base = format!("http://{}", api.command_api_addr.unwrap());
        let pool = PgPool::connect(&url).await.unwrap();
        let mut stack = Self {
            database,
            url,
            pool,
            api: Mutex::new(Some(api)),
            runner: None,
            base,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            master_key,
        };
        stack.start_runner();
        stack
    }

    /// The `shop` binary as this stack's processes run it.
    fn shop(&self) -> Command {
        shop_with(&self.url, self.master_key.as_deref())
    }

    fn start_runner(&mut self) {
        let mut runner = self.shop();
        runner.arg("saga-runner");
        self.runner = Some(ShopProcess::spawn(runner, 0));
    }

    fn kill_runner(&mut self) {
        if let Some(mut runner) = self.runner.take() {
            runner.kill(); // SIGKILL: no goodbye
        }
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.post_holding(path, token, None, body).await
    }

    /// A POST, with a guest cart's `Cart-Token` when given.
    async fn post_holding(
        &self,
        path: &str,
        token: Option<&str>,
        cart_token: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut request = self.client.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(cart_token) = cart_token {
            request = request.header("cart-token", cart_token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn staff_token(&self) -> String {
        let (status, body) = self
            .post(
                "/api/auth/login",
                None,
                json!({"email": "boss@shop.test", "password": STAFF_PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// A cart with `quantity` of `sku`, checked out with `card`; the order id.
    async fn checkout(&self, token: Option<&str>, sku: &str, quantity: u32, card: &str) -> Uuid {
        let address = json!({"name": "Ada", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"});
        self.checkout_to(token, sku, quantity, card, address).await
    }

    /// [`Stack::checkout`], shipped to `address`.
    async fn checkout_to(
        &self,
        token: Option<&str>,
        sku: &str,
        quantity: u32,
        card: &str,
        address: Value,
    ) -> Uuid {
        let (status, cart) = self.post("/api/carts", token, json!({})).await;
        assert_eq!(status, StatusCode::CREATED, "{cart}");
        // a guest cart answers its secret once: the guest sends it with every later request
        let cart_token = cart["cart_token"].as_str().map(str::to_owned);
        let cart = cart["cart_id"].as_str().unwrap().to_owned();
        let (status, body) = self
            .post_holding(
                &format!("/api/carts/{cart}/items"),
                token,
                cart_token.as_deref(),
                json!({"sku": sku, "quantity": quantity}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = self
            .post_holding(
                &format!("/api/carts/{cart}/checkout"),
                token,
                cart_token.as_deref(),
                json!({"shipping_address": address, "payment_method": card}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["order_id"].as_str().unwrap().parse().unwrap()
    }

    /// How each checkout ended (`CheckoutCompleted` / `CheckoutFailed`), waiting for all of them.
    async fn outcomes(&self, orders: &[Uuid], timeout: Duration) -> HashMap<Uuid, String> {
        let ids: Vec<String> = orders.iter().map(Uuid::to_string).collect();
        let started = Instant::now();
        loop {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT aggregate_id, event_type FROM events
                  WHERE aggregate_type = 'checkout' AND aggregate_id = ANY($1)
                    AND event_type IN ('CheckoutCompleted', 'CheckoutFailed')",
            )
            .bind(&ids)
            .fetch_all(&self.pool)
            .await
            .unwrap();
            if rows.len() == orders.len() || started.elapsed() > timeout {
                return rows
                    .into_iter()
                    .map(|(id, outcome)| (id.parse().unwrap(), outcome))
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn stores(&self) -> schemas::stores::Stores {
        schemas::stores::Stores::new(&self.pool)
    }

    /// Stops the runner and drains the command API; the database is dropped with the stack.
    async fn stop(mut self) {
        self.kill_runner();
        let api = self.api.lock().unwrap().take();
        if let Some(api) = api {
            api.shutdown().stop();
            let stopped = api.run_until_stopped().await.unwrap();
            assert_eq!(stopped, shop::app::Stopped::Drained);
        }
        self.pool.close().await;
        drop(self.database);
    }
}

async fn event_count(pool: &PgPool, event_type: &str, aggregate_id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = $1 AND aggregate_id = $2")
        .bind(event_type)
        .bind(aggregate_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_happy_checkout_is_captured_and_a_declined_card_releases_the_stock() {
    let stack = Stack::start().await;
    let (status, session) = stack
        .post(
            "/api/auth/register",
            None,
            json!({"email": "ada@example.com", "password": "correct horse battery", "name": "Ada"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let ada = session["access_token"].as_str().unwrap().to_owned();

    let happy = stack.checkout(Some(&ada), "KB-60", 2, "pm_card_visa").await;
    let declined = stack
        .checkout(None, "MS-01", 3, "pm_card_chargeDeclined")
        .await;
    let outcomes = stack
        .outcomes(&[happy, declined], Duration::from_secs(60))
        .await;
    assert_eq!(outcomes[&happy], "CheckoutCompleted");
    assert_eq!(outcomes[&declined], "CheckoutFailed");

    let stores = stack.stores();
    let order = stores
        .orders
        .load(&happy.to_string())
        .await
        .unwrap()
        .aggregate;
    assert_eq!(order.status(), Some(OrderStatus::Confirmed));
    let payment = stores
        .payments
        .load(&domain::derived_ids::payment_id_of_order(domain::OrderId::new(happy)).to_string())
        .await
        .unwrap();
    assert_eq!(payment.aggregate.status(), Some(PaymentStatus::Captured));
    let keyboards = stores.inventory.load("KB-60").await.unwrap().aggregate;
    assert_eq!(
        (keyboards.on_hand(), keyboards.available()),
        (33, 33),
        "35 seeded, 2 sold"
    );

    let failed = stores
        .orders
        .load(&declined.to_string())
        .await
        .unwrap()
        .aggregate;
    assert_eq!(failed.status(), Some(OrderStatus::Failed));
    assert_eq!(
        failed.failure(),
        Some(&FailureReason::PaymentDeclined {
            message: "Your card was declined.".into()
        })
    );
    let mice = stores.inventory.load("MS-01").await.unwrap().aggregate;
    assert_eq!(
        (mice.on_hand(), mice.available()),
        (60, 60),
        "the reservation was released"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_checkouts_for_fifty_units_confirm_exactly_fifty() {
    let stack = Arc::new(Stack::start().await);
    let staff = stack.staff_token().await;
    let product = json!({"sku": "HOT-1", "name": "Hot item", "category": "deals", "price": {"amount_minor": 1999, "currency": "EUR"}});
    assert_eq!(
        stack.post("/api/products", Some(&staff), product).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        stack
            .post(
                "/api/inventory/HOT-1/receive",
                Some(&staff),
                json!({"quantity": 50})
            )
            .await
            .0,
        StatusCode::OK
    );

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let stack = stack.clone();
        tasks.spawn(async move { stack.checkout(None, "HOT-1", 1, "pm_card_visa").await });
    }
    let mut orders = Vec::new();
    while let Some(order) = tasks.join_next().await {
        orders.push(order.unwrap());
    }
    let outcomes = stack.outcomes(&orders, Duration::from_secs(180)).await;
    assert_eq!(outcomes.len(), 200, "every checkout settled");
    let confirmed = outcomes
        .values()
        .filter(|o| *o == "CheckoutCompleted")
        .count();
    assert_eq!(confirmed, 50);
    let stock = stack
        .stores()
        .inventory
        .load("HOT-1")
        .await
        .unwrap()
        .aggregate;
    assert_eq!((stock.on_hand(), stock.available()), (0, 0));
    assert!(stock.reservations().is_empty());
    let stack = Arc::into_inner(stack).expect("no task holds the stack");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_saga_runner_mid_flow_completes_every_checkout_exactly_once() {
    let mut stack = Stack::start().await;
    // slow cards keep checkouts in flight long enough to be interrupted
    let mut orders = Vec::new();
    for n in 0..24 {
        let card = if n % 4 == 3 {
            "pm_card_chargeDeclined"
        } else {
            "pm_card_slow"
        };
        orders.push(stack.checkout(None, "CAB-USB", 1, card).await);
    }
    // let some of them get going, then kill the runner without warning, twice
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        stack.kill_runner();
        tokio::time::sleep(Duration::from_millis(200)).await;
        stack.start_runner();
    }
    let outcomes = stack.outcomes(&orders, Duration::from_secs(180)).await;
    assert_eq!(
        outcomes.len(),
        orders.len(),
        "every checkout settled after the restarts"
    );

    let stores = stack.stores();
    let mut sold = 0;
    for (n, order) in orders.iter().enumerate() {
        let id = order.to_string();
        let payment =
            domain::derived_ids::payment_id_of_order(domain::OrderId::new(*order)).to_string();
        let expected = if n % 4 == 3 {
            "CheckoutFailed"
        } else {
            "CheckoutCompleted"
        };
        assert_eq!(outcomes[order], expected, "order {n}");
        // exactly once, whatever was interrupted
        assert_eq!(event_count(&stack.pool, "OrderPlaced", &id).await, 1);
        assert_eq!(
            event_count(&stack.pool, "PaymentRequested", &payment).await,
            1
        );
        if expected == "CheckoutCompleted" {
            sold += 1;
            assert_eq!(event_count(&stack.pool, "OrderConfirmed", &id).await, 1);
            assert_eq!(
                event_count(&stack.pool, "PaymentCaptured", &payment).await,
                1
            );
        } else {
            assert_eq!(event_count(&stack.pool, "OrderFailed", &id).await, 1);
            assert_eq!(
                event_count(&stack.pool, "PaymentCaptured", &payment).await,
                0
            );
        }
    }
    let reserved: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'StockReserved' AND aggregate_id = 'CAB-USB'")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(
        reserved,
        orders.len() as i64,
        "one reservation per checkout"
    );
    let cables = stores.inventory.load("CAB-USB").await.unwrap().aggregate;
    assert_eq!(
        (cables.on_hand(), cables.available()),
        (200 - sold, 200 - sold)
    );
    let captures: i64 =
        sqlx::query_scalar("SELECT count(*) FROM local_payment_intents WHERE captured_minor > 0")
            .fetch_one(&stack.pool)
            .await
            .unwrap();
    assert_eq!(
        captures, sold as i64,
        "the provider captured each paid order once"
    );
    stack.stop().await;
}
