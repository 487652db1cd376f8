//! A query API on a random port over a fresh database, a Redis prefix of its own and an
//! in-memory search index; helpers to write events and to run the projectors to the head.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use accounts::tokens::{Secret, TokenKeys};
use accounts::{passwords, Role};
use chrono::Utc;
use domain::cart::CartOwner;
use domain::order::OrderLine;
use domain::pricing::Discount;
use domain::{
    Address, CartCommand, CartId, Currency, CustomerId, InventoryCommand, Money, OrderCommand,
    OrderId, OrderNumber, PaymentCommand, PaymentId, ProductCommand, Quantity, Sku,
};
use eventlog::testing::TestDatabase;
use eventlog::{Actor, EventMetadata, LogPosition};
use projections::redis::RedisReadModels;
use projections::search::{SearchFeed, SearchIndex};
use query_api::{QueryApi, QueryConfig, ReadModels};
use schemas::stores::Stores;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use uuid::Uuid;

/// The secret of every guest cart the harness opens (its `Cart-Token`).
pub const GUEST_CART_TOKEN: &str = "guest-cart-secret-for-tests-0123456789abcdef";

pub struct Harness {
    pub db: TestDatabase,
    pub stores: Stores,
    pub base: String,
    pub client: reqwest::Client,
    /// The API the server runs, for requests that bypass HTTP.
    pub api: QueryApi,
    keys: TokenKeys,
    redis: Arc<RedisReadModels>,
    redis_prefix: String,
    search: Mutex<SearchFeed>,
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

pub fn meta() -> EventMetadata {
    EventMetadata::new(Actor::system("test"))
}

pub fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").unwrap())
}

pub fn qty(n: u32) -> Quantity {
    Quantity::new(n).unwrap()
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(QueryConfig::default()).await
    }

    pub async fn start_with(config: QueryConfig) -> Harness {
        let db = TestDatabase::create(
            eventlog::migrate::MIGRATIONS
                .iter()
                .chain(command_api::MIGRATIONS),
            8,
        )
        .await;
        for projection in projections::pg::all() {
            projections::pg::ensure_live(&db.pool, projection.as_ref())
                .await
                .unwrap();
        }
        let redis_prefix = format!("shop:test:{}", Uuid::new_v4().simple());
        let redis = Arc::new(
            RedisReadModels::connect(&redis_url(), &redis_prefix)
                .await
                .expect("Redis at REDIS_URL"),
        );
        let index = SearchIndex::open(None).unwrap();
        let search = Mutex::new(SearchFeed::new(&index).unwrap());
        let keys = TokenKeys::new(
            &Secret::new(vec![42; 32]).unwrap(),
            Duration::from_secs(900),
        );
        let models = ReadModels {
            pool: db.pool.clone(),
            redis: Some(redis.clone()),
            search: index,
            consistency_wait: config.consistency_wait,
        };
        let api = QueryApi::new(models, keys.clone(), config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = query_api::router(api.clone());
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Harness {
            stores: Stores::new(&db.pool),
            db,
            base: format!("http://{addr}"),
            api,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            keys,
            redis,
            redis_prefix,
            search,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("{}/graphql/ws", self.base.replacen("http", "ws", 1))
    }

    /// A signed-in account of `role` (a real row, so `me.email` answers).
    pub async fn account(&self, role: Role) -> (Uuid, String) {
        let email = format!("{}@example.com", Uuid::new_v4().simple());
        let hash = passwords::hash("a long password".into()).await.unwrap();
        let id = accounts::create(&self.db.pool, &email, "Someone", &hash, role)
            .await
            .unwrap();
        (id, self.keys.issue(id, role).unwrap())
    }

    /// A signed-in account of `role` with a real session: its access token (naming the session)
    /// and the session's refresh token (to sign out with).
    pub async fn account_in_session(&self, role: Role) -> (Uuid, String, String) {
        let (id, _) = self.account(role).await;
        let session = accounts::start_session(&self.db.pool, id, chrono::Duration::days(1))
            .await
            .unwrap();
        let token = self
            .keys
            .issue_for_session(id, role, session.family)
            .unwrap();
        (id, token, session.refresh_token)
    }

    /// An access token of `account` that expires `ttl` (whole seconds) from now.
    pub fn token_expiring_in(&self, account: Uuid, role: Role, ttl: Duration) -> String {
        TokenKeys::new(&Secret::new(vec![42; 32]).unwrap(), ttl)
            .issue(account, role)
            .unwrap()
    }

    /// Runs every projector until it has read the whole log. Transactions of other tests on
    /// the same server hold the gap-safe reader back for a moment (transaction ids are
    /// server-wide), so this waits for the head rather than for an empty batch.
    pub async fn project(&self) {
        let pool = &self.db.pool;
        let head: Option<(i64, i64)> = sqlx::query_as(
            "SELECT transaction_id::text::bigint, global_position FROM events
              ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
        )
        .fetch_optional(pool)
        .await
        .unwrap();
        let Some((transaction_id, global_position)) = head else {
            return;
        };
        let head = LogPosition {
            transaction_id,
            global_position,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut behind = false;
            for projection in projections::pg::all() {
                projections::pg::step(pool, projection.as_ref(), 1_000)
                    .await
                    .unwrap();
                let name = projections::pg::checkpoint_name(projection.as_ref());
                behind |= eventlog::checkpoint::load(pool, &name).await.unwrap() < head;
            }
            self.redis.follow(pool, 1_000).await.unwrap();
            behind |= eventlog::checkpoint::load(pool, projections::redis::SUBSCRIPTION)
                .await
                .unwrap()
                < head;
            let mut search = self.search.lock().await;
            search.catch_up(pool, 1_000).await.unwrap();
            behind |= search.folded_position() < head;
            drop(search);
            if !behind {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "projectors did not reach {head}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// POSTs a query; the whole response body.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        self.gql_with(token, query, variables, &[]).await.1
    }

    pub async fn gql_with(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.base))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    pub async fn drop(self) {
        let mut connection = redis::Client::open(redis_url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.redis_prefix))
            .query_async(&mut connection)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL")
                .arg(keys)
                .query_async(&mut connection)
                .await
                .unwrap();
        }
        self.db.drop().await;
    }

    // ------------------------------------------------------------------ writing events

    pub async fn product(&self, sku: &str, name: &str, category: &str, price: i64, stock: u32) {
        let create = ProductCommand::Create {
            sku: Sku::parse(sku.to_owned()).unwrap(),
            name: name.to_owned(),
            description: format!("{name}: a fine {category} product"),
            category: category.to_owned(),
            price: eur(price),
            created_at: Utc::now(),
        };
        self.stores
            .products
            .execute(sku, create, &meta())
            .await
            .unwrap();
        if stock > 0 {
            let receive = InventoryCommand::ReceiveStock {
                sku: Sku::parse(sku.to_owned()).unwrap(),
                quantity: qty(stock),
            };
            self.stores
                .inventory
                .execute(sku, receive, &meta())
                .await
                .unwrap();
        }
    }

    /// The catalog most tests use: two audio products in stock, one out of stock, a mug.
    pub async fn catalog(&self) {
        self.product("HP-1", "Studio headphones", "audio", 12_900, 5)
            .await;
        self.product("SPK-1", "Bluetooth speaker", "audio", 4_900, 0)
            .await;
        self.product("MUG-1", "Coffee mug", "home", 1_200, 10).await;
    }

    /// A customer's cart with two headphones and a 10% coupon; its id and the last position.
    /// A cart of `owner`, or a guest cart (whose secret is [`GUEST_CART_TOKEN`]).
    pub async fn cart(&self, owner: Option<Uuid>) -> (Uuid, LogPosition) {
        let id = Uuid::new_v4();
        let owner = match owner {
            Some(customer) => CartOwner::Customer(CustomerId::new(customer)),
            None => CartOwner::Guest,
        };
        let key = id.to_string();
        let commands = vec![
            CartCommand::Create {
                owner,
                currency: Currency::parse("EUR").unwrap(),
                created_at: Utc::now(),
            },
            CartCommand::AddItem {
                sku: Sku::parse("HP-1".to_owned()).unwrap(),
                quantity: qty(2),
                unit_price: eur(12_900),
            },
            CartCommand::ApplyCoupon {
                code: "WELCOME10".into(),
                discount: Discount::Percent(10),
            },
        ];
        let mut position = LogPosition::START;
        for command in commands {
            let receipt = self
                .stores
                .carts
                .execute(&key, command, &meta())
                .await
                .unwrap();
            position = receipt.position.unwrap();
        }
        if owner == CartOwner::Guest {
            // a guest cart's secret, as the command API keeps it
            let hash = accounts::cart_tokens::hash(GUEST_CART_TOKEN);
            accounts::cart_tokens::register(&self.db.pool, id, &hash)
                .await
                .unwrap();
        }
        (id, position)
    }

    /// A confirmed order of one headphone for `customer` (stock reserved, payment authorized);
    /// its id and the last position.
    pub async fn confirmed_order(
        &self,
        customer: Option<Uuid>,
        number: u64,
    ) -> (Uuid, LogPosition) {
        let order = OrderId::new(Uuid::new_v4());
        let payment = PaymentId::new(Uuid::new_v4());
        let now = Utc::now();
        let reserve = InventoryCommand::Reserve {
            order_id: order,
            quantity: qty(1),
            expires_at: now + chrono::Duration::minutes(15),
        };
        self.stores
            .inventory
            .execute("HP-1", reserve, &meta())
            .await
            .unwrap();
        let place = OrderCommand::Place {
            order_number: OrderNumber(number),
            customer: customer.map(CustomerId::new),
            cart_id: CartId::new(Uuid::new_v4()),
            lines: vec![OrderLine {
                sku: Sku::parse("HP-1".to_owned()).unwrap(),
                name: "Studio headphones".into(),
                quantity: qty(1),
                unit_price: eur(12_900),
            }],
            currency: Currency::parse("EUR").unwrap(),
            discount: eur(0),
            tax: eur(2_451),
            shipping: eur(499),
            shipping_address: Address::new("Ada", "1 Main St", None, "Berlin", "10115", "DE")
                .unwrap(),
            payment_method: "pm_card_visa".into(),
            placed_at: now,
        };
        let id = order.to_string();
        self.stores
            .orders
            .execute(&id, place, &meta())
            .await
            .unwrap();
        self.stores
            .orders
            .execute(&id, OrderCommand::MarkStockReserved { at: now }, &meta())
            .await
            .unwrap();
        let pay = payment.to_string();
        let request = PaymentCommand::Request {
            order_id: order,
            amount: eur(15_850),
            method: "pm_card_visa".into(),
            requested_at: now,
        };
        self.stores
            .payments
            .execute(&pay, request, &meta())
            .await
            .unwrap();
        let authorize = PaymentCommand::Authorize {
            provider_ref: "pi_test".into(),
            at: now,
        };
        self.stores
            .payments
            .execute(&pay, authorize, &meta())
            .await
            .unwrap();
        let confirm = OrderCommand::Confirm {
            payment_id: payment,
            at: now,
        };
        let receipt = self
            .stores
            .orders
            .execute(&id, confirm, &meta())
            .await
            .unwrap();
        (order.as_uuid(), receipt.position.unwrap())
    }

    pub async fn ship(&self, order: Uuid) -> LogPosition {
        let ship = OrderCommand::Ship {
            tracking: Some("TRACK-1".into()),
            at: Utc::now(),
        };
        self.stores
            .orders
            .execute(&order.to_string(), ship, &meta())
            .await
            .unwrap()
            .position
            .unwrap()
    }
}

/// The `extensions.code` of the first error.
pub fn code(response: &Value) -> &str {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {response}"))
}

pub fn no_errors(response: &Value) {
    assert!(
        response.get("errors").is_none(),
        "unexpected errors: {response}"
    );
}

// ------------------------------------------------------------------ snapshots

/// Compares a response with `tests/snapshots/<name>.json` after replacing what differs between
/// runs (ids, times, cursors, positions) with placeholders. `UPDATE_SNAPSHOTS=1` rewrites.
pub fn assert_snapshot(name: &str, response: &Value) {
    let redacted = redact(response.clone(), None);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(&redacted).unwrap() + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {}; run with UPDATE_SNAPSHOTS=1 to create it",
            path.display()
        )
    });
    assert_eq!(
        text,
        expected,
        "response differs from snapshot {} (UPDATE_SNAPSHOTS=1 to accept)",
        path.display()
    );
}

fn redact(value: Value, key: Option<&str>) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let redacted = redact(v, Some(&k));
                    (k, redacted)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| redact(v, key)).collect()),
        Value::String(text) => {
            let placeholder = if matches!(key, Some("cursor" | "startCursor" | "endCursor")) {
                Some("<cursor>")
            } else if matches!(key, Some("position")) {
                Some("<position>")
            } else if text.parse::<Uuid>().is_ok() {
                Some("<uuid>")
            } else if chrono::DateTime::parse_from_rfc3339(&text).is_ok() {
                Some("<time>")
            } else {
                None
            };
            Value::String(placeholder.map_or(text, str::to_owned))
        }
        Value::Number(number) if matches!(key, Some("score")) => {
            // BM25 scores are floats: keep two decimals
            let rounded = (number.as_f64().unwrap_or(0.0) * 100.0).round() / 100.0;
            json!(rounded)
        }
        other => other,
    }
}
