//! The command API over real HTTP against the real PostgreSQL: every route, its auth rule, the
//! error codes and the idempotency rules. The app is spawned on a random port with a fresh
//! database per test.

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

struct TestApp {
    base: String,
    client: Client,
    state: AppState,
    db: TestDatabase,
}

impl TestApp {
    async fn spawn() -> Self {
        // generous limits: the rate-limit test sets its own
        Self::spawn_with(ApiConfig {
            auth_per_minute: 6_000,
            ..ApiConfig::default()
        })
        .await
    }

    async fn spawn_with(config: ApiConfig) -> Self {
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
    async fn token(&self, role: Role) -> (Uuid, String) {
        let email = format!("{}@example.com", Uuid::new_v4().simple());
        let hash = passwords::hash("a long password".into()).await.unwrap();
        let id = accounts::create(&self.db.pool, &email, "Someone", &hash, role)
            .await
            .unwrap();
        (id, self.state.tokens.issue(id, role).unwrap())
    }

    fn request(&self, method: Method, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, format!("{}{path}", self.base));
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    async fn send(
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

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let (status, _, value) = self.send(Method::POST, path, token, Some(body)).await;
        (status, value)
    }

    /// A POST with a guest cart's `Cart-Token`.
    async fn post_holding(
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

    async fn create_product(&self, staff: &str, sku: &str, price: i64) {
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

    async fn finish(self) {
        self.db.drop().await;
    }
}

fn assert_problem(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], expected.as_u16(), "{body}");
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn register_login_refresh_rotation_and_logout() {
    let app = TestApp::spawn().await;
    let register =
        json!({"email": "Ada@Example.com", "password": "correct horse battery", "name": "Ada"});
    let (status, session) = app.post("/api/auth/register", None, register.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    assert_eq!(session["role"], "customer");
    assert_eq!(session["expires_in"], 900);
    let customer_id: Uuid = serde_json::from_value(session["customer_id"].clone()).unwrap();
    let claims = app
        .state
        .tokens
        .verify(session["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!((claims.sub, claims.role), (customer_id, Role::Customer));

    let stored: String =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE email = 'ada@example.com'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert!(
        stored.starts_with("$argon2id$"),
        "argon2 hash, email normalised"
    );

    let (status, body) = app.post("/api/auth/register", None, register).await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, body) = app
        .post(
            "/api/auth/register",
            None,
            json!({"email": "nope", "password": "correct horse battery", "name": "A"}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let (status, body) = app
        .post(
            "/api/auth/register",
            None,
            json!({"email": "b@example.com", "password": "short", "name": "B"}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );

    let (status, body) = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": "ada@example.com", "password": "wrong password!"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, body) = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": "ghost@example.com", "password": "wrong password!"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, login) = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": "ada@example.com", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{login}");

    // rotation: the old refresh token stops working; reusing it revokes the family
    let first = login["refresh_token"].clone();
    let (status, rotated) = app
        .post("/api/auth/refresh", None, json!({"refresh_token": first}))
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_ne!(rotated["refresh_token"], first);
    let (status, body) = app
        .post("/api/auth/refresh", None, json!({"refresh_token": first}))
        .await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "token_reused");
    let (status, body) = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": rotated["refresh_token"]}),
        )
        .await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");

    // logout revokes the session of the registration
    let (status, _) = app
        .post(
            "/api/auth/logout",
            None,
            json!({"refresh_token": session["refresh_token"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": session["refresh_token"]}),
        )
        .await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");

    // a forged or expired bearer token is a 401, not a guest
    let (status, _, body) = app
        .send(Method::POST, "/api/carts", Some("forged.token.here"), None)
        .await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    app.finish().await;
}

#[tokio::test]
async fn access_tokens_die_with_their_session_at_logout_and_at_refresh_token_reuse() {
    let app = TestApp::spawn().await;
    let (status, registered) = app
        .post(
            "/api/auth/register",
            None,
            json!({"email": "lee@example.com", "password": "correct horse battery", "name": "Lee"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    let login = || async {
        let (status, session) = app
            .post(
                "/api/auth/login",
                None,
                json!({"email": "lee@example.com", "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{session}");
        session
    };
    let open_cart = |session: &Value| {
        let request = app
            .request(Method::POST, "/api/carts", session["access_token"].as_str())
            .json(&json!({}));
        async move { request.send().await.unwrap().status() }
    };
    let phone = login().await;
    let laptop = login().await;
    assert_eq!(open_cart(&registered).await, StatusCode::CREATED);
    assert_eq!(open_cart(&phone).await, StatusCode::CREATED);

    // logout ends the session at once: its access token too, not 15 minutes later
    let (status, body) = app
        .post(
            "/api/auth/logout",
            None,
            json!({"refresh_token": phone["refresh_token"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(open_cart(&phone).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        open_cart(&laptop).await,
        StatusCode::CREATED,
        "other sessions live on"
    );

    // a reused refresh token revokes its family: every access token of it stops working
    let (status, rotated) = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": laptop["refresh_token"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_eq!(open_cart(&rotated).await, StatusCode::CREATED);
    let (status, body) = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": laptop["refresh_token"]}),
        )
        .await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "token_reused");
    for session in [&laptop, &rotated] {
        let response = app
            .request(Method::POST, "/api/carts", session["access_token"].as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "unauthorized", "{problem}");
    }
    assert_eq!(open_cart(&registered).await, StatusCode::CREATED);

    // another replica, which believed the session alive a moment ago, refuses it within its
    // session check's ttl
    let other = AppState::new(
        app.db.pool.clone(),
        &Secret::new(vec![42; 32]).unwrap(),
        ApiConfig {
            session_check_ttl: Duration::from_millis(200),
            ..ApiConfig::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_base = format!("http://{}", listener.local_addr().unwrap());
    let router = command_api::router(other);
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let on_other = || {
        let request = app
            .client
            .post(format!("{other_base}/api/carts"))
            .bearer_auth(registered["access_token"].as_str().unwrap())
            .json(&json!({}));
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(on_other().await, StatusCode::CREATED);
    let (status, _) = app
        .post(
            "/api/auth/logout",
            None,
            json!({"refresh_token": registered["refresh_token"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(on_other().await, StatusCode::UNAUTHORIZED);
    app.finish().await;
}

#[tokio::test]
async fn auth_routes_are_rate_limited_per_client_with_retry_after() {
    let app = TestApp::spawn_with(ApiConfig {
        auth_per_minute: 6,
        ..ApiConfig::default()
    })
    .await;
    let mut limited = None;
    for attempt in 0..10 {
        let response = app
            .request(Method::POST, "/api/auth/login", None)
            .json(&json!({"email": format!("u{attempt}@example.com"), "password": "whatever pass"}))
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(response);
            break;
        }
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = limited.expect("the limit was reached");
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    app.finish().await;
}

async fn login_status(app: &TestApp, forwarded_for: Option<&str>) -> StatusCode {
    let mut request = app
        .request(Method::POST, "/api/auth/login", None)
        // a new email each time: only the client's bucket is under test
        .json(
            &json!({"email": format!("{}@example.com", Uuid::new_v4().simple()),
                      "password": "whatever pass"}),
        );
    if let Some(forwarded_for) = forwarded_for {
        request = request.header("x-forwarded-for", forwarded_for);
    }
    request.send().await.unwrap().status()
}

#[tokio::test]
async fn clients_behind_a_trusted_proxy_are_limited_each_on_their_own() {
    // the test client connects from 127.0.0.1: that is "the ingress"
    let app = TestApp::spawn_with(ApiConfig {
        auth_per_minute: 6, // a burst of 3
        trusted_proxies: "127.0.0.1/32, 10.0.0.0/8".parse().unwrap(),
        ..ApiConfig::default()
    })
    .await;
    // the proxy appends the address it saw; a client's own fake first hop does not help it
    for _ in 0..3 {
        let status = login_status(&app, Some("203.0.113.1, 10.0.0.7")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        login_status(&app, Some("203.0.113.1")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login_status(&app, Some("198.51.100.99, 203.0.113.1")).await,
        StatusCode::TOO_MANY_REQUESTS,
        "a spoofed first hop is not the client"
    );
    // another client behind the same proxy is not locked out
    assert_eq!(
        login_status(&app, Some("203.0.113.2")).await,
        StatusCode::UNAUTHORIZED
    );
    app.finish().await;
}

#[tokio::test]
async fn an_untrusted_peer_cannot_pick_its_rate_limit_key() {
    let app = TestApp::spawn_with(ApiConfig {
        auth_per_minute: 6,
        trusted_proxies: "10.0.0.0/8".parse().unwrap(),
        ..ApiConfig::default()
    })
    .await;
    let mut statuses = Vec::new();
    for attempt in 0..5 {
        statuses.push(login_status(&app, Some(&format!("203.0.113.{attempt}"))).await);
    }
    assert_eq!(
        statuses[3..],
        [StatusCode::TOO_MANY_REQUESTS, StatusCode::TOO_MANY_REQUESTS],
        "X-Forwarded-For from an untrusted peer is ignored: {statuses:?}"
    );
    app.finish().await;
}

#[tokio::test]
async fn signed_in_callers_are_limited_per_account_not_per_address() {
    let app = TestApp::spawn_with(ApiConfig {
        auth_per_minute: 6,     // a burst of 3
        checkout_per_minute: 6, // a burst of 3
        ..ApiConfig::default()
    })
    .await;
    // every caller here shares one address (127.0.0.1)
    let (_, alice) = app.token(Role::Customer).await;
    let (_, bob) = app.token(Role::Customer).await;
    let refresh = |token: Option<&str>| {
        let request = app
            .request(Method::POST, "/api/auth/refresh", token)
            .json(&json!({"refresh_token": "not-a-token"}));
        async move { request.send().await.unwrap().status() }
    };
    for _ in 0..3 {
        assert_eq!(refresh(Some(&alice)).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(refresh(Some(&alice)).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refresh(Some(&bob)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(None).await, StatusCode::UNAUTHORIZED, "the address");

    let checkout = |token: Option<&str>| {
        let path = format!("/api/carts/{}/checkout", Uuid::new_v4());
        let body = json!({"shipping_address": {"name": "A", "line1": "1 Main St", "city": "Berlin",
                          "postal_code": "10115", "country": "DE"}, "payment_method": "pm_card_visa"});
        let request = app.request(Method::POST, &path, token).json(&body);
        async move { request.send().await.unwrap().status() }
    };
    for _ in 0..3 {
        assert_eq!(checkout(Some(&alice)).await, StatusCode::NOT_FOUND);
    }
    assert_eq!(checkout(Some(&alice)).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(checkout(Some(&bob)).await, StatusCode::NOT_FOUND);
    assert_ne!(checkout(None).await, StatusCode::TOO_MANY_REQUESTS);
    app.finish().await;
}

#[tokio::test]
async fn catalog_and_stock_are_for_staff_and_validate_their_input() {
    let app = TestApp::spawn().await;
    let (_, staff) = app.token(Role::Staff).await;
    let (_, customer) = app.token(Role::Customer).await;
    let product = json!({"sku": "KB-1", "name": "Keyboard", "description": "clicky", "category": "computers",
                         "price": {"amount_minor": 4999, "currency": "EUR"}});

    let (status, body) = app.post("/api/products", None, product.clone()).await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, body) = app
        .post("/api/products", Some(&customer), product.clone())
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, headers, body) = app
        .send(
            Method::POST,
            "/api/products",
            Some(&staff),
            Some(product.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["sku"], "KB-1");
    let position = body["position"].as_str().unwrap();
    assert_eq!(headers["shop-position"].to_str().unwrap(), position);
    assert_eq!(headers["location"].to_str().unwrap(), "/api/products/KB-1");
    let (status, body) = app.post("/api/products", Some(&staff), product).await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");

    let invalid = [
        json!({"sku": "bad sku", "name": "x", "category": "c", "price": {"amount_minor": 1, "currency": "EUR"}}),
        json!({"sku": "OK-1", "name": "", "category": "c", "price": {"amount_minor": 1, "currency": "EUR"}}),
        json!({"sku": "OK-1", "name": "x", "category": "c", "price": {"amount_minor": -5, "currency": "EUR"}}),
        json!({"sku": "OK-1", "name": "x", "category": "c", "price": {"amount_minor": 5, "currency": "euro"}}),
    ];
    for body in invalid {
        let (status, problem) = app.post("/api/products", Some(&staff), body).await;
        assert_problem(
            status,
            &problem,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        );
    }
    let (status, body) = app
        .post("/api/products", Some(&staff), json!({"sku": "OK-1", "name": "x", "category": "c", "price": {"amount_minor": 5, "currency": "EUR"}, "colour": "red"}))
        .await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST, "malformed_request");

    let (status, _, body) = app
        .send(Method::PATCH, "/api/products/KB-1", Some(&staff), Some(json!({"name": "Mechanical keyboard", "price": {"amount_minor": 5999, "currency": "EUR"}})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = app
        .send(
            Method::PATCH,
            "/api/products/KB-1",
            Some(&staff),
            Some(json!({})),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let (status, _, body) = app
        .send(
            Method::PATCH,
            "/api/products/NOPE",
            Some(&staff),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");

    // stock
    let (status, body) = app
        .post(
            "/api/inventory/NOPE/receive",
            Some(&staff),
            json!({"quantity": 5}),
        )
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = app
        .post(
            "/api/inventory/KB-1/receive",
            Some(&staff),
            json!({"quantity": -5}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let (status, body) = app
        .post(
            "/api/inventory/KB-1/receive",
            Some(&customer),
            json!({"quantity": 5}),
        )
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app
        .post(
            "/api/inventory/KB-1/receive",
            Some(&staff),
            json!({"quantity": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .post(
            "/api/inventory/KB-1/adjust",
            Some(&staff),
            json!({"delta": -9, "reason": "stocktake"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "insufficient_stock");
    let (status, body) = app
        .post(
            "/api/inventory/KB-1/adjust",
            Some(&staff),
            json!({"delta": -2, "reason": "damaged"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stock = app
        .state
        .stores
        .inventory
        .load("KB-1")
        .await
        .unwrap()
        .aggregate;
    assert_eq!(stock.on_hand(), 3);

    let (status, body) = app
        .post("/api/products/KB-1/discontinue", Some(&staff), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = app
        .send(
            Method::POST,
            "/api/products/KB-1/discontinue",
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["position"],
        Value::Null,
        "discontinuing twice changes nothing"
    );
    app.finish().await;
}

#[tokio::test]
async fn carts_belong_to_their_holder_and_check_out_into_an_order() {
    let app = TestApp::spawn().await;
    let (_, staff) = app.token(Role::Staff).await;
    let (alice_id, alice) = app.token(Role::Customer).await;
    let (_, bob) = app.token(Role::Customer).await;
    app.create_product(&staff, "MUG-1", 1200).await;
    app.create_product(&staff, "CUP-2", 800).await;

    // a guest cart: whoever holds its token
    let (status, _, guest_cart) = app.send(Method::POST, "/api/carts", None, None).await;
    assert_eq!(status, StatusCode::CREATED, "{guest_cart}");
    let guest_id = guest_cart["cart_id"].as_str().unwrap().to_owned();
    let guest_token = guest_cart["cart_token"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post_holding(
            &format!("/api/carts/{guest_id}/items"),
            None,
            &guest_token,
            json!({"sku": "MUG-1", "quantity": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .post_holding(
            &format!("/api/carts/{guest_id}/items"),
            None,
            &guest_token,
            json!({"sku": "NOPE-1", "quantity": 1}),
        )
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = app
        .post_holding(
            &format!("/api/carts/{guest_id}/items"),
            None,
            &guest_token,
            json!({"sku": "MUG-1", "quantity": 0}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let (status, body) = app
        .post(
            &format!("/api/carts/{}/items", Uuid::new_v4()),
            None,
            json!({"sku": "MUG-1", "quantity": 1}),
        )
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");

    // a customer's cart: that customer only
    let (status, _, cart) = app
        .send(
            Method::POST,
            "/api/carts",
            Some(&alice),
            Some(json!({"currency": "EUR"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let cart_id = cart["cart_id"].as_str().unwrap().to_owned();
    let items = format!("/api/carts/{cart_id}/items");
    let (status, body) = app
        .post(&items, Some(&bob), json!({"sku": "CUP-2", "quantity": 1}))
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app
        .post(&items, None, json!({"sku": "CUP-2", "quantity": 1}))
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app
        .post(&items, Some(&alice), json!({"sku": "CUP-2", "quantity": 3}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = app
        .send(
            Method::PATCH,
            &format!("{items}/CUP-2"),
            Some(&alice),
            Some(json!({"quantity": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = app
        .send(
            Method::DELETE,
            &format!("{items}/MUG-1"),
            Some(&alice),
            None,
        )
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (_, staff_cart) = app.post("/api/carts", Some(&staff), json!({})).await;
    assert_eq!(staff_cart["code"], "forbidden");

    // coupons
    let coupon = format!("/api/carts/{cart_id}/coupon");
    let (status, body) = app
        .post(&coupon, Some(&alice), json!({"code": "NOPE"}))
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = app
        .post(&coupon, Some(&alice), json!({"code": "welcome10"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // merge the guest cart into Alice's
    let merge = format!("/api/carts/{cart_id}/merge");
    let (status, body) = app
        .post(&merge, None, json!({"guest_cart_id": guest_id}))
        .await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, body) = app
        .post_holding(
            &merge,
            Some(&alice),
            &guest_token,
            json!({"guest_cart_id": guest_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let merged = app
        .state
        .stores
        .carts
        .load(&cart_id)
        .await
        .unwrap()
        .aggregate;
    let lines: Vec<(String, u32)> = merged
        .lines()
        .iter()
        .map(|l| (l.sku.to_string(), l.quantity.get()))
        .collect();
    assert_eq!(lines, vec![("CUP-2".into(), 1), ("MUG-1".into(), 2)]);
    let (status, body) = app
        .post_holding(
            &format!("/api/carts/{guest_id}/items"),
            None,
            &guest_token,
            json!({"sku": "MUG-1", "quantity": 1}),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");

    // checkout
    let checkout = format!("/api/carts/{cart_id}/checkout");
    let address = json!({"name": "Alice", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"});
    let (status, body) = app
        .post(
            &checkout,
            Some(&bob),
            json!({"shipping_address": address, "payment_method": "pm_card_visa"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app
        .post(
            &checkout,
            Some(&alice),
            json!({"shipping_address": {"name": "Alice"}, "payment_method": "pm_card_visa"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST, "malformed_request");
    let (status, body) = app
        .post(
            &checkout,
            Some(&alice),
            json!({"shipping_address": address, "payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let order_id = body["order_id"].as_str().unwrap();
    assert_eq!(
        order_id,
        domain::derived_ids::order_id_of_cart(domain::CartId::new(cart_id.parse().unwrap()))
            .to_string()
    );
    // checking out again is the same checkout: same order, nothing new written
    let (status, again) = app
        .post(
            &checkout,
            Some(&alice),
            json!({"shipping_address": address, "payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(
        (again["order_id"].as_str(), &again["position"]),
        (Some(order_id), &Value::Null)
    );
    let (status, body) = app
        .post(
            &format!("/api/carts/{cart_id}/items"),
            Some(&alice),
            json!({"sku": "MUG-1", "quantity": 1}),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");

    // the events say who did it
    let metadata: Value = sqlx::query_scalar(
        "SELECT metadata FROM events WHERE aggregate_type = 'cart' AND event_type = 'CartCheckedOut'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(metadata["actor_id"], alice_id.to_string());
    assert_eq!(metadata["actor_role"], "customer");
    assert!(metadata["request_id"].as_str().is_some());
    app.finish().await;
}

#[tokio::test]
async fn a_cart_opened_without_a_currency_takes_the_currency_of_its_first_line() {
    let app = TestApp::spawn().await;
    let (_, staff) = app.token(Role::Staff).await;
    let (_, customer) = app.token(Role::Customer).await;
    for (sku, currency) in [("CAP-1", "USD"), ("MUG-1", "EUR")] {
        let (status, body) = app
            .post(
                "/api/products",
                Some(&staff),
                json!({"sku": sku, "name": sku, "description": "d", "category": "c",
                       "price": {"amount_minor": 1500, "currency": currency}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    // a USD shop's storefront opens a cart without saying the currency
    let (status, cart) = app.post("/api/carts", Some(&customer), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{cart}");
    let cart_id = cart["cart_id"].as_str().unwrap();
    let items = format!("/api/carts/{cart_id}/items");
    let (status, body) = app
        .post(
            &items,
            Some(&customer),
            json!({"sku": "CAP-1", "quantity": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // from then on the cart is in USD
    let (status, body) = app
        .post(
            &items,
            Some(&customer),
            json!({"sku": "MUG-1", "quantity": 1}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let cart = app
        .state
        .stores
        .carts
        .load(cart_id)
        .await
        .unwrap()
        .aggregate;
    assert_eq!(cart.currency(), Some(Currency::parse("USD").unwrap()));
    assert_eq!(
        cart.total().unwrap(),
        Money::new(3000, Currency::parse("USD").unwrap())
    );
    // a cart that names its currency keeps it
    let (_, eur_cart) = app
        .post("/api/carts", Some(&customer), json!({"currency": "EUR"}))
        .await;
    let (status, body) = app
        .post(
            &format!("/api/carts/{}/items", eur_cart["cart_id"].as_str().unwrap()),
            Some(&customer),
            json!({"sku": "CAP-1", "quantity": 1}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    app.finish().await;
}

#[tokio::test]
async fn the_shops_default_currency_opens_carts_that_name_none() {
    let usd = Currency::parse("USD").unwrap();
    let app = TestApp::spawn_with(ApiConfig {
        auth_per_minute: 6_000,
        default_currency: Some(usd),
        ..ApiConfig::default()
    })
    .await;
    let (_, customer) = app.token(Role::Customer).await;
    let (status, cart) = app.post("/api/carts", Some(&customer), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{cart}");
    let cart = app
        .state
        .stores
        .carts
        .load(cart["cart_id"].as_str().unwrap())
        .await
        .unwrap()
        .aggregate;
    assert_eq!(cart.currency(), Some(usd));
    app.finish().await;
}

#[tokio::test]
async fn a_checked_out_guest_cart_is_not_merged_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let (_, staff) = app.token(Role::Staff).await;
    let (_, customer) = app.token(Role::Customer).await;
    app.create_product(&staff, "MUG-1", 1200).await;
    let (_, _, guest) = app.send(Method::POST, "/api/carts", None, None).await;
    let guest_id = guest["cart_id"].as_str().unwrap().to_owned();
    let guest_token = guest["cart_token"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post_holding(
            &format!("/api/carts/{guest_id}/items"),
            None,
            &guest_token,
            json!({"sku": "MUG-1", "quantity": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let address = json!({"name": "G", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"});
    let (status, body) = app
        .post_holding(
            &format!("/api/carts/{guest_id}/checkout"),
            None,
            &guest_token,
            json!({"shipping_address": address, "payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // the guest signs in afterwards and the app merges the old guest cart
    let (_, cart) = app.post("/api/carts", Some(&customer), json!({})).await;
    let cart_id = cart["cart_id"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post_holding(
            &format!("/api/carts/{cart_id}/merge"),
            Some(&customer),
            &guest_token,
            json!({"guest_cart_id": guest_id}),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    let cart = app
        .state
        .stores
        .carts
        .load(&cart_id)
        .await
        .unwrap()
        .aggregate;
    assert!(cart.lines().is_empty(), "{:?}", cart.lines());
    let merges: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'CartMerged'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(merges, 0, "nothing was written");
    app.finish().await;
}

/// A secret a guest's client generates for its cart (any 32 to 128 visible characters).
fn new_cart_token() -> String {
    format!("ct_{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

#[tokio::test]
async fn guest_carts_are_unguessable_and_only_their_token_holder_uses_them() {
    let app = TestApp::spawn().await;
    let (_, staff) = app.token(Role::Staff).await;
    let (_, carol) = app.token(Role::Customer).await;
    app.create_product(&staff, "MUG-1", 1200).await;
    let create = |key: Option<&str>, cart_token: Option<&str>| {
        let mut request = app.request(Method::POST, "/api/carts", None);
        if let Some(key) = key {
            request = request.header("idempotency-key", key.to_owned());
        }
        if let Some(cart_token) = cart_token {
            request = request.header("cart-token", cart_token.to_owned());
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let replayed = response.headers().contains_key("idempotent-replayed");
            (status, replayed, response.json::<Value>().await.unwrap())
        }
    };

    // two guests whose clients happen to send the same key get two carts
    let (ann_token, ben_token) = (new_cart_token(), new_cart_token());
    let (status, _, ann) = create(Some("checkout-page"), Some(&ann_token)).await;
    assert_eq!(status, StatusCode::CREATED, "{ann}");
    let (status, replayed, ben) = create(Some("checkout-page"), Some(&ben_token)).await;
    assert_eq!(status, StatusCode::CREATED, "{ben}");
    assert!(!replayed, "another guest's key is not a retry: {ben}");
    let (ann_cart, ben_cart) = (
        ann["cart_id"].as_str().unwrap(),
        ben["cart_id"].as_str().unwrap(),
    );
    assert_ne!(ann_cart, ben_cart);
    assert!(
        ann.get("cart_token").is_none(),
        "the client chose it: {ann}"
    );
    // a retry by the same guest is the same cart
    let (status, replayed, again) = create(Some("checkout-page"), Some(&ann_token)).await;
    assert_eq!((status, replayed), (StatusCode::CREATED, true), "{again}");
    assert_eq!(again["cart_id"], ann["cart_id"]);
    // without a key, the server makes the secret and says it once
    let (status, _, dan) = create(None, None).await;
    assert_eq!(status, StatusCode::CREATED, "{dan}");
    let dan_token = dan["cart_token"].as_str().expect("a cart token").to_owned();
    assert!(dan_token.len() >= 32);
    // a keyed guest create needs a secret of its own, or two guests' keys would collide
    let (status, _, body) = create(Some("lonely-key"), None).await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let (status, _, body) = create(None, Some("short")).await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT body FROM idempotency_keys")
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
    assert!(
        stored
            .iter()
            .all(|body| !String::from_utf8_lossy(body).contains("cart_token")),
        "no cart token is kept with a response"
    );

    // the holder of the token uses the cart; nobody else does
    let with_token = |method: Method, path: String, token: Option<&str>, body: Value| {
        let mut request = app.request(method, &path, None).json(&body);
        if let Some(token) = token {
            request = request.header("cart-token", token.to_owned());
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let items = format!("/api/carts/{ann_cart}/items");
    let mug = json!({"sku": "MUG-1", "quantity": 2});
    let (status, body) =
        with_token(Method::POST, items.clone(), Some(&ann_token), mug.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let address = json!({"name": "Ben", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"});
    let attempts = [
        (Method::POST, items.clone(), mug.clone()),
        (
            Method::PATCH,
            format!("{items}/MUG-1"),
            json!({"quantity": 5}),
        ),
        (Method::DELETE, format!("{items}/MUG-1"), json!({})),
        (
            Method::POST,
            format!("/api/carts/{ann_cart}/coupon"),
            json!({"code": "WELCOME10"}),
        ),
        (
            Method::POST,
            format!("/api/carts/{ann_cart}/checkout"),
            json!({"shipping_address": address, "payment_method": "pm_card_visa"}),
        ),
    ];
    for (method, path, body) in attempts {
        for token in [None, Some(ben_token.as_str()), Some(dan_token.as_str())] {
            let (status, problem) =
                with_token(method.clone(), path.clone(), token, body.clone()).await;
            assert_problem(status, &problem, StatusCode::FORBIDDEN, "forbidden");
        }
    }
    // nor does a customer who learnt the id merge it into their cart
    let (status, carol_cart) = app.post("/api/carts", Some(&carol), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{carol_cart}");
    let merge = format!(
        "/api/carts/{}/merge",
        carol_cart["cart_id"].as_str().unwrap()
    );
    let (status, body) = app
        .post(&merge, Some(&carol), json!({"guest_cart_id": ann_cart}))
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let cart = app
        .state
        .stores
        .carts
        .load(ann_cart)
        .await
        .unwrap()
        .aggregate;
    assert_eq!(cart.lines().len(), 1);
    assert_eq!(cart.lines()[0].quantity.get(), 2, "nothing changed");
    // while the holder signing in merges it with the token
    let response = app
        .request(Method::POST, &merge, Some(&carol))
        .header("cart-token", ann_token.clone())
        .json(&json!({"guest_cart_id": ann_cart}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    app.finish().await;
}

async fn place_order(app: &TestApp, customer: Option<Uuid>) -> Uuid {
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

#[tokio::test]
async fn orders_are_cancelled_by_their_owner_and_shipped_and_refunded_by_staff() {
    let app = TestApp::spawn().await;
    let (_, staff) = app.token(Role::Staff).await;
    let (_, auditor) = app.token(Role::Auditor).await;
    let (alice_id, alice) = app.token(Role::Customer).await;
    let (_, bob) = app.token(Role::Customer).await;

    let order = place_order(&app, Some(alice_id)).await;
    let (status, body) = app
        .post(
            &format!("/api/orders/{order}/cancel"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = app
        .post(&format!("/api/orders/{order}/cancel"), None, json!({}))
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = app
        .post(
            &format!("/api/orders/{order}/cancel"),
            Some(&auditor),
            json!({}),
        )
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app
        .post(
            &format!("/api/orders/{order}/cancel"),
            Some(&alice),
            json!({"reason": "changed my mind"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let shipped = place_order(&app, Some(alice_id)).await;
    let (status, body) = app
        .post(
            &format!("/api/orders/{shipped}/ship"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app
        .post(
            &format!("/api/orders/{shipped}/ship"),
            Some(&staff),
            json!({"tracking": "TRK-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .post(
            &format!("/api/orders/{shipped}/cancel"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, _, body) = app
        .send(
            Method::POST,
            &format!("/api/orders/{shipped}/deliver"),
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // total: 2 × 12.00 + 4.56 tax + 5.00 shipping = 33.56
    let (status, body) = app
        .post(
            &format!("/api/orders/{shipped}/refund"),
            Some(&staff),
            json!({"amount_minor": 1000}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .post(
            &format!("/api/orders/{shipped}/refund"),
            Some(&staff),
            json!({"amount_minor": 5000}),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, body) = app
        .post(
            &format!("/api/orders/{}/ship", Uuid::new_v4()),
            Some(&staff),
            json!({}),
        )
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");

    // a guest order is cancelled by the holder of its cart's secret, and by nobody else
    let guest_order = place_order(&app, None).await;
    let placed = app
        .state
        .stores
        .orders
        .load(&guest_order.to_string())
        .await
        .unwrap();
    let cart_id = placed.aggregate.placed().unwrap().cart_id.as_uuid();
    let cart_token = new_cart_token();
    accounts::cart_tokens::register(
        &app.state.pool,
        cart_id,
        &accounts::cart_tokens::hash(&cart_token),
    )
    .await
    .unwrap();
    let path = format!("/api/orders/{guest_order}/cancel");
    let (status, body) = app.post(&path, None, json!({})).await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = app
        .post_holding(&path, None, &new_cart_token(), json!({}))
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = app.post_holding(&path, None, &cart_token, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.finish().await;
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_result_and_refuses_a_different_body() {
    let app = TestApp::spawn().await;
    let (_, staff) = app.token(Role::Staff).await;
    app.create_product(&staff, "MUG-1", 1200).await;
    // a guest: its client's cart secret says whose keys these are
    let cart_token = new_cart_token();
    let scope = format!(
        "guest:{}",
        hex::encode(accounts::cart_tokens::hash(&cart_token))
    );

    let create = |key: &str| {
        app.request(Method::POST, "/api/carts", None)
            .header("cart-token", cart_token.clone())
            .header("idempotency-key", key.to_owned())
            .json(&json!({"currency": "EUR"}))
    };
    let first = create("cart-key-1").send().await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first_position = first.headers()["shop-position"].clone();
    let first: Value = first.json().await.unwrap();
    let again = create("cart-key-1").send().await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["shop-position"], first_position);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);
    let carts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'CartCreated'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(carts, 1, "the retry created nothing");

    let different = app
        .request(Method::POST, "/api/carts", None)
        .header("cart-token", cart_token.clone())
        .header("idempotency-key", "cart-key-1")
        .json(&json!({"currency": "USD"}))
        .send()
        .await
        .unwrap();
    assert_eq!(different.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        different.json::<Value>().await.unwrap()["code"],
        "idempotency_key_reused"
    );

    // adding an item twice with one key adds it once
    let cart_id = first["cart_id"].as_str().unwrap();
    for _ in 0..2 {
        let response = app
            .request(Method::POST, &format!("/api/carts/{cart_id}/items"), None)
            .header("cart-token", cart_token.clone())
            .header("idempotency-key", "add-mug")
            .json(&json!({"sku": "MUG-1", "quantity": 2}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let cart = app
        .state
        .stores
        .carts
        .load(cart_id)
        .await
        .unwrap()
        .aggregate;
    assert_eq!(cart.lines()[0].quantity.get(), 2);

    // even if the stored response is lost (a crash after the events were written), a retry
    // after the lease does not apply the command again: the event store knows its command id
    sqlx::query("DELETE FROM idempotency_keys WHERE key = 'add-mug'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let retried = app
        .request(Method::POST, &format!("/api/carts/{cart_id}/items"), None)
        .header("cart-token", cart_token.clone())
        .header("idempotency-key", "add-mug")
        .json(&json!({"sku": "MUG-1", "quantity": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), StatusCode::OK);
    let cart = app
        .state
        .stores
        .carts
        .load(cart_id)
        .await
        .unwrap()
        .aggregate;
    assert_eq!(cart.lines()[0].quantity.get(), 2);

    let metadata: Value =
        sqlx::query_scalar("SELECT metadata FROM events WHERE event_type = 'ItemAdded'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(metadata["command_id"], format!("{scope}:add-mug"));
    assert_eq!(metadata["actor_role"], "guest");

    // a key whose first request is still being processed: 409 with Retry-After
    let body = serde_json::to_vec(&json!({"currency": "EUR"})).unwrap();
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    sha2::Digest::update(&mut hasher, b"POST\0/api/carts\0");
    sha2::Digest::update(&mut hasher, &body);
    let hash = sha2::Digest::finalize(hasher).to_vec();
    sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, request_hash, locked_until)
         VALUES ($1, 'busy-key', $2, now() + interval '30 seconds')",
    )
    .bind(&scope)
    .bind(hash)
    .execute(&app.db.pool)
    .await
    .unwrap();
    let busy = app
        .request(Method::POST, "/api/carts", None)
        .header("cart-token", cart_token.clone())
        .header("idempotency-key", "busy-key")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(busy.status(), StatusCode::CONFLICT);
    assert_eq!(busy.headers()["retry-after"], "1");
    assert_eq!(
        busy.json::<Value>().await.unwrap()["code"],
        "request_in_progress"
    );

    let bad_key = app
        .request(Method::POST, "/api/carts", None)
        .header("idempotency-key", "x".repeat(300))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_key.status(), StatusCode::UNPROCESSABLE_ENTITY);
    app.finish().await;
}

#[tokio::test]
async fn auth_responses_are_never_kept_and_a_retried_refresh_is_not_replayed() {
    let app = TestApp::spawn().await;
    let keyed = |path: &str, key: &str, body: Value| {
        let request = app
            .request(Method::POST, path, None)
            .header("idempotency-key", key.to_owned())
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, session) = keyed(
        "/api/auth/register",
        "register-1",
        json!({"email": "kim@example.com", "password": "correct horse battery", "name": "Kim"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let (status, login) = keyed(
        "/api/auth/login",
        "login-1",
        json!({"email": "kim@example.com", "password": "correct horse battery"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let refresh = json!({"refresh_token": login["refresh_token"]});
    let (status, rotated) = keyed("/api/auth/refresh", "refresh-1", refresh.clone()).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    // the same refresh again, same key: the rotated token is used a second time, which is
    // reuse (the family is revoked), not a replay handing out the stored tokens again
    let (status, again) = keyed("/api/auth/refresh", "refresh-1", refresh).await;
    assert_problem(status, &again, StatusCode::UNAUTHORIZED, "token_reused");
    let (status, body) = keyed(
        "/api/auth/logout",
        "logout-1",
        json!({"refresh_token": session["refresh_token"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(kept, 0, "no auth response (tokens in plain text) is stored");
    app.finish().await;
}

#[tokio::test]
async fn an_idempotency_key_expires_and_then_runs_again() {
    let app = TestApp::spawn().await;
    let (_, staff) = app.token(Role::Staff).await;
    let create = || {
        app.request(Method::POST, "/api/products", Some(&staff))
            .header("idempotency-key", "product-1")
            .json(
                &json!({"sku": "OLD-1", "name": "Old", "description": "d", "category": "c",
                          "price": {"amount_minor": 100, "currency": "EUR"}}),
            )
            .send()
    };
    let first: Value = create().await.unwrap().json().await.unwrap();
    assert!(first["position"].is_string(), "{first}");
    let replayed = create().await.unwrap();
    assert_eq!(replayed.status(), StatusCode::CREATED);
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    assert_eq!(replayed.json::<Value>().await.unwrap(), first);
    // a day later the key is forgotten: the request runs again (and the event store, which
    // knows the command id, writes nothing twice) and the key starts a new day
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let late = create().await.unwrap();
    assert_eq!(late.status(), StatusCode::CREATED);
    assert!(late.headers().get("idempotent-replayed").is_none());
    let renewed: bool = sqlx::query_scalar(
        "SELECT created_at > now() - interval '1 minute' FROM idempotency_keys WHERE key = 'product-1'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!(renewed);
    let products: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'ProductCreated'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(products, 1);

    // the purge deletes expired keys only
    sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, request_hash, locked_until, created_at)
         VALUES ('someone', 'old', '\\x00', now(), now() - interval '25 hours')",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    let purged =
        command_api::idempotency::purge_expired(&app.db.pool, Duration::from_secs(24 * 3600))
            .await
            .unwrap();
    assert_eq!(purged, 1);
    let left: Vec<String> = sqlx::query_scalar("SELECT key FROM idempotency_keys")
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(left, vec!["product-1".to_owned()]);
    app.finish().await;
}

#[tokio::test]
async fn bodies_that_are_not_json_too_big_or_unrouted_get_clear_4xx() {
    let app = TestApp::spawn().await;
    let (_, staff) = app.token(Role::Staff).await;
    let wrong_type = app
        .request(Method::POST, "/api/products", Some(&staff))
        .header("content-type", "text/plain")
        .body("sku=KB-1")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        wrong_type.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(
        wrong_type.json::<Value>().await.unwrap()["code"],
        "unsupported_media_type"
    );

    let malformed = app
        .request(Method::POST, "/api/products", Some(&staff))
        .header("content-type", "application/json")
        .body("{\"sku\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        malformed.json::<Value>().await.unwrap()["code"],
        "malformed_request"
    );

    let huge = json!({"sku": "KB-1", "name": "x".repeat(100_000), "category": "c", "price": {"amount_minor": 1, "currency": "EUR"}});
    let (status, body) = app.post("/api/products", Some(&staff), huge.clone()).await;
    assert_problem(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    let huge_keyed = app
        .request(Method::POST, "/api/products", Some(&staff))
        .header("idempotency-key", "huge")
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(huge_keyed.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let (status, _, body) = app.send(Method::GET, "/api/nothing-here", None, None).await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, _, body) = app
        .send(Method::PUT, "/api/products", Some(&staff), None)
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    let (status, _, body) = app
        .send(
            Method::POST,
            "/api/carts/not-a-uuid/items",
            None,
            Some(json!({"sku": "A", "quantity": 1})),
        )
        .await;
    assert!(status.is_client_error(), "{status} {body}");

    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(events, 0, "nothing was written");

    let (status, _, _) = app.send(Method::GET, "/health/live", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = app.send(Method::GET, "/health/ready", None, None).await;
    assert_eq!(status, StatusCode::OK);
    app.finish().await;
}

#[tokio::test]
async fn control_characters_in_text_are_refused_at_the_edge_naming_the_field() {
    let app = TestApp::spawn().await;
    let (_, staff) = app.token(Role::Staff).await;
    let (_, customer) = app.token(Role::Customer).await;
    let product = |name: &str, description: &str| {
        json!({"sku": "NUL-1", "name": name, "description": description, "category": "c",
               "price": {"amount_minor": 100, "currency": "EUR"}})
    };
    // PostgreSQL's jsonb cannot hold U+0000: this used to be a 500
    let (status, body) = app
        .post("/api/products", Some(&staff), product("Mug\u{0}", "d"))
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert!(body["detail"].as_str().unwrap().contains("name"), "{body}");
    // other C0 controls too, nested fields named by their path
    let (_, cart) = app.post("/api/carts", Some(&customer), json!({})).await;
    let cart_id = cart["cart_id"].as_str().unwrap();
    let (status, body) = app
        .post(
            &format!("/api/carts/{cart_id}/checkout"),
            Some(&customer),
            json!({"shipping_address": {"name": "A", "line1": "1 Main St", "city": "Ber\u{1b}lin",
                                        "postal_code": "10115", "country": "DE"},
                   "payment_method": "pm_card_visa"}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("shipping_address.city"),
        "{body}"
    );
    // and in keys
    let (status, body) = app
        .post(
            "/api/auth/login",
            None,
            json!({"email\u{0}": "a@b.c", "password": "x"}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    // tabs and line breaks are text
    let (status, body) = app
        .post(
            "/api/products",
            Some(&staff),
            product("Mug", "two lines,\r\nand a\ttab"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(
        events, 2,
        "only the cart and the clean product were written"
    );
    app.finish().await;
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_every_listed_route_exists() {
    let app = TestApp::spawn().await;
    let (status, _, document) = app.send(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"], "3.1.0");
    for route in command_api::routes::ROUTES {
        let operation = &document["paths"][route.path][route.method];
        assert!(
            operation.is_object(),
            "{} {} missing",
            route.method,
            route.path
        );
        // every $ref resolves
        let text = operation.to_string();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(
                document["components"]["schemas"][name].is_object(),
                "unresolved {name}"
            );
        }
        // and the route is served: not the fallback's 404 / 405
        let path = route
            .path
            .replace("{sku}", "ZZ-1")
            .replace("{id}", &Uuid::new_v4().to_string());
        let method: Method = route.method.to_uppercase().parse().unwrap();
        let (status, _, body) = app.send(method, &path, None, Some(json!({}))).await;
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{} {}",
            route.method,
            route.path
        );
        assert_ne!(
            body["detail"], "no such route",
            "{} {}",
            route.method, route.path
        );
    }
    app.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Fuzzing: malformed input at every route never gets a 5xx

const FIELDS: &[&str] = &[
    "sku",
    "name",
    "description",
    "category",
    "price",
    "amount_minor",
    "currency",
    "quantity",
    "delta",
    "reason",
    "email",
    "password",
    "refresh_token",
    "code",
    "guest_cart_id",
    "shipping_address",
    "payment_method",
    "tracking",
    "line1",
    "city",
    "postal_code",
    "country",
];

fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        Just(json!(u64::MAX)),
        "\\PC{0,40}".prop_map(Value::String),
        text_with_controls().prop_map(Value::String),
        "[A-Z0-9-]{1,70}".prop_map(Value::String),
        Just(json!("EUR")),
        Just(json!({"amount_minor": 100, "currency": "EUR"})),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(FIELDS), inner), 0..6).prop_map(
                |fields| Value::Object(
                    fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )
            ),
        ]
    })
}

/// Text with control characters (NUL above all: PostgreSQL's jsonb cannot hold it) among
/// ordinary ones.
fn text_with_controls() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    proptest::collection::vec(
        prop_oneof![
            3 => Just('\u{0}'),
            3 => (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap()),
            1 => Just('\u{7f}'),
            4 => proptest::char::range('a', 'z'),
            2 => any::<char>(),
        ],
        1..12,
    )
    .prop_map(String::from_iter)
}

/// A valid body of the route at `path` (before `{id}`/`{sku}` are filled in), for mutations
/// that must get past the shape checks to reach the stores.
fn example_body(path: &str) -> Option<Value> {
    let address = json!({"name": "A", "line1": "1 Main St", "line2": "Hof", "city": "Berlin",
                         "postal_code": "10115", "country": "DE"});
    Some(match path {
        "/api/auth/register" => {
            json!({"email": "fuzz@example.com", "password": "a long password", "name": "F"})
        }
        "/api/auth/login" => json!({"email": "fuzz@example.com", "password": "a long password"}),
        "/api/auth/refresh" | "/api/auth/logout" => json!({"refresh_token": "0123456789abcdef"}),
        "/api/products" => json!({"sku": "FZ-1", "name": "Fuzz", "description": "d",
                                  "category": "c", "price": {"amount_minor": 100, "currency": "EUR"}}),
        "/api/products/{sku}" => json!({"name": "Fuzz", "description": "d", "category": "c"}),
        "/api/inventory/{sku}/adjust" => json!({"delta": 1, "reason": "stocktake"}),
        "/api/carts" => json!({"currency": "EUR"}),
        "/api/carts/{id}/items" => json!({"sku": "MUG-1", "quantity": 1}),
        "/api/carts/{id}/coupon" => json!({"code": "WELCOME10"}),
        "/api/carts/{id}/checkout" => {
            json!({"shipping_address": address, "payment_method": "pm_card_visa"})
        }
        "/api/orders/{id}/cancel" => json!({"reason": "changed my mind"}),
        "/api/orders/{id}/ship" => json!({"tracking": "TRK-1"}),
        "/api/orders/{id}/refund" => json!({"amount_minor": 1, "reason": "scratched"}),
        _ => return None,
    })
}

/// Replaces the `index`-th string of `value` (modulo their number) with `text`.
fn replace_a_string(value: &mut Value, index: usize, text: &str) {
    fn strings(value: &mut Value) -> Vec<&mut Value> {
        match value {
            Value::String(_) => vec![value],
            Value::Array(items) => items.iter_mut().flat_map(strings).collect(),
            Value::Object(fields) => fields.values_mut().flat_map(strings).collect(),
            _ => Vec::new(),
        }
    }
    let mut found = strings(value);
    if !found.is_empty() {
        let count = found.len();
        *found[index % count] = Value::String(text.to_owned());
    }
}

#[derive(Debug, Clone)]
enum Body {
    Json(Value),
    /// The route's valid example with one string replaced by this text.
    Mutated(usize, String),
    Bytes(Vec<u8>),
    Empty,
}

fn body() -> impl proptest::strategy::Strategy<Value = Body> {
    use proptest::prelude::*;
    prop_oneof![
        4 => json_value().prop_map(Body::Json),
        3 => (any::<usize>(), text_with_controls()).prop_map(|(i, t)| Body::Mutated(i, t)),
        1 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Body::Bytes),
        1 => Just(Body::Empty),
    ]
}

#[test]
fn malformed_input_at_every_route_never_gets_a_5xx() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _context = runtime.enter();
    let app = runtime.block_on(TestApp::spawn());
    let (_, staff) = runtime.block_on(app.token(Role::Staff));
    let (_, customer) = runtime.block_on(app.token(Role::Customer));
    runtime.block_on(app.create_product(&staff, "MUG-1", 1200));
    let (_, _, cart) = runtime.block_on(app.send(Method::POST, "/api/carts", None, None));
    let cart_id = cart["cart_id"].as_str().unwrap().to_owned();
    let cart_token = cart["cart_token"].as_str().unwrap().to_owned();

    let routes = command_api::routes::ROUTES;
    let strategy = (
        0..routes.len(),
        0..4usize,
        body(),
        prop_oneof![
            Just("application/json"),
            Just("text/plain"),
            Just("application/json; charset=utf-8"),
            Just("")
        ],
        prop_oneof![
            Just(cart_id.clone()),
            Just(Uuid::new_v4().to_string()),
            "[a-zA-Z0-9%._~-]{0,40}"
        ],
        prop_oneof![Just("MUG-1".to_owned()), "[a-zA-Z0-9%._~-]{0,70}"],
        proptest::option::of("[ -~]{0,80}"),
        proptest::option::of(prop_oneof![Just(cart_token.clone()), "[ -~]{0,140}"]),
    );
    let config = ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    runner
        .run(
            &strategy,
            |(route, auth, body, content_type, id, sku, idempotency_key, held_cart_token)| {
                let route = &routes[route];
                let path = route.path.replace("{id}", &id).replace("{sku}", &sku);
                let method: Method = route.method.to_uppercase().parse().unwrap();
                let token = match auth {
                    0 => None,
                    1 => Some(staff.as_str()),
                    2 => Some(customer.as_str()),
                    _ => Some("garbage"),
                };
                let mut request = app.request(method, &path, token);
                if !content_type.is_empty() {
                    request = request.header("content-type", content_type);
                }
                if let Some(key) = &idempotency_key {
                    request = request.header("idempotency-key", key.as_str());
                }
                if let Some(held) = &held_cart_token {
                    request = request.header("cart-token", held.as_str());
                }
                request = match &body {
                    Body::Json(value) => request.body(value.to_string()),
                    Body::Mutated(index, text) => {
                        let mut value = example_body(route.path).unwrap_or_else(|| json!({}));
                        replace_a_string(&mut value, *index, text);
                        request.body(value.to_string())
                    }
                    Body::Bytes(bytes) => request.body(bytes.clone()),
                    Body::Empty => request,
                };
                let response = runtime.block_on(request.send());
                let response = match response {
                    Ok(response) => response,
                    // a path the HTTP client itself refuses to send is not a server failure
                    Err(error) if error.is_builder() => return Ok(()),
                    Err(error) => panic!("request failed: {error}"),
                };
                let status = response.status();
                let text = runtime.block_on(response.text()).unwrap_or_default();
                prop_assert!(
                    !status.is_server_error(),
                    "{} {path} with {body:?} ({content_type}) → {status}: {text}",
                    route.method
                );
                Ok(())
            },
        )
        .unwrap();
    runtime.block_on(app.finish());
}

/// An operator's rebuild: staff only, unknown read models are a 404, one at a time (a 409 while
/// another holds the read model's rebuild lock), and it runs in the background to the swap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_rebuild_a_read_model_in_the_background_one_at_a_time() {
    let app = TestApp::spawn().await;
    let (_, staff) = app.token(Role::Staff).await;
    let (_, customer) = app.token(Role::Customer).await;
    app.create_product(&staff, "MUG-1", 1200).await;
    let path = "/api/read-models/catalog/rebuild";

    let (status, _, body) = app.send(Method::POST, path, Some(&customer), None).await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, _, body) = app.send(Method::POST, path, None, None).await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, _, body) = app
        .send(
            Method::POST,
            "/api/read-models/nothing/rebuild",
            Some(&staff),
            None,
        )
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");

    // someone else is rebuilding the catalog
    let catalog = projections::pg::by_name("catalog").unwrap();
    let key = projections::pg::rebuild_lock_key(catalog.as_ref());
    let mut other = app.db.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(key)
        .execute(&mut *other)
        .await
        .unwrap();
    let (status, _, body) = app.send(Method::POST, path, Some(&staff), None).await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    other.close().await.unwrap();

    let (status, _, body) = app.send(Method::POST, path, Some(&staff), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["name"], "catalog");
    // built from the log and swapped in: the product is in the live catalog (the gap-safe log
    // reader waits for transactions older than the product's anywhere on the server, and a
    // busy machine runs other tests' transactions: up to a minute)
    let mut rows = 0_i64;
    for _ in 0..600 {
        let done = projections::pg::rebuild_progress(&app.db.pool, catalog.as_ref())
            .await
            .unwrap()
            .is_none();
        let status = projections::pg::status(&app.db.pool, catalog.as_ref())
            .await
            .unwrap();
        if done && status.state == "live" {
            rows =
                sqlx::query_scalar("SELECT count(*) FROM rm_catalog.products WHERE sku = 'MUG-1'")
                    .fetch_one(&app.db.pool)
                    .await
                    .unwrap();
            if rows == 1 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rows, 1, "the rebuilt catalog holds the product");
    app.finish().await;
}
