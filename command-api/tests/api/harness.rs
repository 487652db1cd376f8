//! The test app: the command API on a random port over a fresh database, a client, and helpers that
//! seed what a test needs.

use std::net::SocketAddr;
use std::time::Duration;

use accounts::{passwords, tokens::Secret, Role};
use command_api::{ApiConfig, AppState};
use domain::order::OrderLine;
use domain::{
    Address, CartId, Currency, CustomerId, Money, OrderCommand, OrderNumber, PaymentId, Quantity,
    Sku,
};
use eventlog::testing::TestDatabase;
use eventlog::{Actor, EventMetadata};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

pub struct TestApp {
    pub base: String,
    pub client: Client,
    pub state: AppState,
    pub db: TestDatabase,
}

impl TestApp {
    pub async fn spawn() -> Self {
        // generous limits: the rate-limit test sets its own
        Self::spawn_with(ApiConfig {
            auth_per_minute: 6_000,
            ..ApiConfig::default()
        })
        .await
    }

    pub async fn spawn_with(config: ApiConfig) -> Self {
        let db = TestDatabase::create(
            eventlog::migrate::MIGRATIONS
                .iter()
                .chain(command_api::MIGRATIONS),
            8,
        )
        .await;
        sqlx::query("INSERT INTO coupons (code, percent_off) VALUES ('WELCOME10', 10)")
            .execute(&db.pool)
            .await
            .unwrap();
        let state = AppState::new(db.pool.clone(), &Secret::new(vec![42; 32]).unwrap(), config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = command_api::router(state.clone());
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Self {
            base: format!("http://{addr}"),
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            state,
            db,
        }
    }

    /// A token for a new account of `role`.
    pub async fn token(&self, role: Role) -> (Uuid, String) {
        let email = format!("{}@example.com", Uuid::new_v4().simple());
        let hash = passwords::hash("a long password".into()).await.unwrap();
        let id = accounts::create(&self.db.pool, &email, "Someone", &hash, role)
            .await
            .unwrap();
        (id, self.state.tokens.issue(id, role).unwrap())
    }

    pub fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, format!("{}{path}", self.base));
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut builder = self.request(method, path, token);
        if let Some(body) = body {
            builder = builder.json(&body);
        }
        let response = builder.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, value)
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let (status, _, value) = self.send(Method::POST, path, token, Some(body)).await;
        (status, value)
    }

    /// A POST with a guest cart's `Cart-Token`.
    pub async fn post_holding(
        &self,
        path: &str,
        token: Option<&str>,
        cart_token: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let response = self
            .request(Method::POST, path, token)
            .header("cart-token", cart_token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    pub async fn create_product(&self, staff: &str, sku: &str, price: i64) {
        let (status, body) = self
            .post(
                "/api/products",
                Some(staff),
                json!({"sku": sku, "name": format!("Product {sku}"), "description": "d",
                       "category": "tests", "price": {"amount_minor": price, "currency": "EUR"}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    pub async fn finish(self) {
        self.db.drop().await;
    }
}

pub fn assert_problem(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], expected.as_u16(), "{body}");
}

pub async fn place_order(app: &TestApp, customer: Option<Uuid>) -> Uuid {
    let order_id = Uuid::new_v4();
    let eur = Currency::parse("EUR").unwrap();
    let meta = EventMetadata::new(Actor::system("test"));
    let orders = &app.state.stores.orders;
    let place = OrderCommand::Place {
        order_number: OrderNumber(1),
        customer: customer.map(CustomerId::new),
        cart_id: CartId::new(Uuid::new_v4()),
        lines: vec![OrderLine {
            sku: Sku::parse("MUG-1").unwrap(),
            name: "Mug".into(),
            quantity: Quantity::new(2).unwrap(),
            unit_price: Money::new(1200, eur),
        }],
        currency: eur,
        discount: Money::zero(eur),
        tax: Money::new(456, eur),
        shipping: Money::new(500, eur),
        shipping_address: Address::new("A", "1 Main St", None, "Berlin", "10115", "DE").unwrap(),
        payment_method: "pm_card_visa".into(),
        placed_at: chrono::Utc::now(),
    };
    let id = order_id.to_string();
    orders.execute(&id, place, &meta).await.unwrap();
    orders
        .execute(
            &id,
            OrderCommand::MarkStockReserved {
                at: chrono::Utc::now(),
            },
            &EventMetadata::new(Actor::system("test")),
        )
        .await
        .unwrap();
    orders
        .execute(
            &id,
            OrderCommand::Confirm {
                payment_id: PaymentId::new(Uuid::new_v4()),
                at: chrono::Utc::now(),
            },
            &EventMetadata::new(Actor::system("test")),
        )
        .await
        .unwrap();
    order_id
}

/// A secret a guest's client generates for its cart (any 32 to 128 visible characters).
pub fn new_cart_token() -> String {
    format!("ct_{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}
