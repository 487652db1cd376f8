//! The personal-data routes over real HTTP against the real PostgreSQL, with personal fields
//! sealed: a customer's export and self-erasure, staff's export and erasure of a customer, who
//! may call which, and a shop without a master key refusing erasure.

mod support;

use std::sync::Arc;

use accounts::{tokens::Secret, Role};
use chrono::Utc;
use command_api::{ApiConfig, AppState};
use domain::order::OrderLine;
use domain::{
    Address, CartId, Currency, CustomerId, Money, OrderCommand, OrderId, OrderNumber, Quantity, Sku,
};
use eventlog::testing::TestDatabase;
use eventlog::{Actor, EventMetadata};
use reqwest::{Client, Method, StatusCode};
use schemas::personal::{Keyring, MasterKey};
use serde_json::Value;
use uuid::Uuid;

const NAME: &str = "Ottoline Brackenbury";
const STREET: &str = "5 Quince Walk";

struct TestApp {
    base: String,
    client: Client,
    state: AppState,
    db: TestDatabase,
}

impl TestApp {
    async fn spawn(sealed: bool) -> Self {
        let db = TestDatabase::create(
            eventlog::migrate::MIGRATIONS
                .iter()
                .chain(command_api::MIGRATIONS)
                .chain(schemas::personal::MIGRATIONS),
            8,
        )
        .await;
        let keyring = match sealed {
            true => Some(Arc::new(
                Keyring::open(db.pool.clone(), MasterKey::generate().unwrap().0)
                    .await
                    .unwrap(),
            )),
            false => None,
        };
        let state = AppState::with_keyring(
            db.pool.clone(),
            &Secret::new(vec![42; 32]).unwrap(),
            ApiConfig::default(),
            keyring,
        );
        let support::Served {
            base,
            client,
            state,
            db,
        } = support::serve(db, state).await;
        Self {
            base,
            client,
            state,
            db,
        }
    }

    async fn account(&self, role: Role) -> (Uuid, String) {
        let email = format!("{}@example.com", Uuid::new_v4().simple());
        let id = accounts::create(&self.db.pool, &email, NAME, "not a real hash", role)
            .await
            .unwrap();
        (id, self.state.tokens.issue(id, role).unwrap())
    }

    /// An order of `customer`, placed through the API's (sealing) event store.
    async fn order_of(&self, customer: Uuid) -> OrderId {
        let eur = Currency::parse("EUR").unwrap();
        let order = OrderId::new(Uuid::new_v4());
        let line = OrderLine {
            sku: Sku::parse("MUG-1").unwrap(),
            name: "Mug".into(),
            quantity: Quantity::new(1).unwrap(),
            unit_price: Money::new(900, eur),
        };
        self.state
            .stores
            .orders
            .execute(
                &order.to_string(),
                OrderCommand::Place {
                    order_number: OrderNumber(7),
                    customer: Some(CustomerId::new(customer)),
                    cart_id: CartId::new(Uuid::new_v4()),
                    lines: vec![line],
                    currency: eur,
                    discount: Money::zero(eur),
                    tax: Money::zero(eur),
                    shipping: Money::zero(eur),
                    shipping_address: Address::new(NAME, STREET, None, "Leeds", "LS1 4AP", "GB")
                        .unwrap(),
                    payment_method: "pm_card_visa".into(),
                    placed_at: Utc::now(),
                },
                &EventMetadata::new(Actor::system("test")),
            )
            .await
            .unwrap();
        order
    }

    async fn send(&self, method: Method, path: &str, token: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn a_customer_exports_and_erases_their_own_data() {
    let app = TestApp::spawn(true).await;
    let (customer, token) = app.account(Role::Customer).await;
    let order = app.order_of(customer).await;
    let stored: String = sqlx::query_scalar("SELECT string_agg(payload::text, '') FROM events")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(!stored.contains(STREET), "sealed in the log");

    let (status, export) = app.send(Method::GET, "/api/me/data", &token).await;
    assert_eq!(status, StatusCode::OK, "{export}");
    assert_eq!(export["customer_id"], customer.to_string());
    assert_eq!(export["profile"]["name"], NAME);
    assert_eq!(export["addresses"][0]["line1"], STREET);
    assert_eq!(export["orders"][0]["order_id"], order.to_string());
    assert_eq!(export["erased"], false);

    let (status, report) = app.send(Method::POST, "/api/me/erasure", &token).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["key_destroyed"], true);
    assert_eq!(report["account_deleted"], true);

    let (_, staff) = app.account(Role::Staff).await;
    let (status, export) = app
        .send(
            Method::GET,
            &format!("/api/customers/{customer}/data"),
            &staff,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{export}");
    assert_eq!(export["erased"], true);
    assert_eq!(export["profile"], Value::Null);
    assert_eq!(export["addresses"][0]["line1"], "[erased]");
    assert!(!export.to_string().contains(STREET));
    app.db.drop().await;
}

#[tokio::test]
async fn only_staff_reach_another_customers_data_and_only_customers_are_erased() {
    let app = TestApp::spawn(true).await;
    let (customer, token) = app.account(Role::Customer).await;
    let (_, other) = app.account(Role::Customer).await;
    let (staff_id, staff) = app.account(Role::Staff).await;
    for (method, path) in [
        (Method::GET, format!("/api/customers/{customer}/data")),
        (Method::POST, format!("/api/customers/{customer}/erasure")),
    ] {
        let (status, body) = app.send(method.clone(), &path, &other).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert_eq!(body["code"], "forbidden");
    }
    // staff have no `me` data here
    let (status, _) = app.send(Method::GET, "/api/me/data", &staff).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // a staff account is not erased as a customer
    let (status, body) = app
        .send(
            Method::POST,
            &format!("/api/customers/{staff_id}/erasure"),
            &staff,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "validation");
    let (status, body) = app
        .send(
            Method::POST,
            &format!("/api/customers/{customer}/erasure"),
            &staff,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // the customer's account is gone: their own export has no profile any more
    let (status, export) = app.send(Method::GET, "/api/me/data", &token).await;
    assert!(
        status == StatusCode::UNAUTHORIZED || export["profile"].is_null(),
        "{status} {export}"
    );
    app.db.drop().await;
}

#[tokio::test]
async fn a_shop_without_a_master_key_refuses_erasure_with_a_code() {
    let app = TestApp::spawn(false).await;
    let (customer, _) = app.account(Role::Customer).await;
    let (_, staff) = app.account(Role::Staff).await;
    let (status, body) = app
        .send(
            Method::POST,
            &format!("/api/customers/{customer}/erasure"),
            &staff,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "conflict");
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("SHOP_DATA_KEY_MASTER"));
    // nothing was deleted
    let still: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE id = $1")
        .bind(customer)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(still, 1);
    app.db.drop().await;
}
