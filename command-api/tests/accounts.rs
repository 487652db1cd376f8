//! The account's own data over real HTTP against the real PostgreSQL: profile, address book,
//! checkout with a saved address, the list of sessions and their revocation, password reset.

mod support;
use support::assert_problem;

use std::time::Duration;

use accounts::{passwords, tokens::Secret, Role};
use command_api::{ApiConfig, AppState};
use eventlog::testing::TestDatabase;
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
                .chain(command_api::MIGRATIONS)
                .chain(sagas::MIGRATIONS),
            8,
        )
        .await;
        let state = AppState::new(db.pool.clone(), &Secret::new(vec![42; 32]).unwrap(), config);
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

    /// A token (outside any session) for a new account of `role`.
    async fn token(&self, role: Role) -> (Uuid, String) {
        let email = format!("{}@example.com", Uuid::new_v4().simple());
        let hash = passwords::hash("a long password".into()).await.unwrap();
        let id = accounts::create(&self.db.pool, &email, "Someone", &hash, role)
            .await
            .unwrap();
        (id, self.state.tokens.issue(id, role).unwrap())
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        user_agent: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut builder = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            builder = builder.bearer_auth(token);
        }
        if let Some(agent) = user_agent {
            builder = builder.header("user-agent", agent);
        }
        if let Some(body) = body {
            builder = builder.json(&body);
        }
        let response = builder.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, token, None, Some(body)).await
    }

    async fn put(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.send(Method::PUT, path, token, None, Some(body)).await
    }

    async fn delete(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.send(Method::DELETE, path, token, None, None).await
    }

    async fn finish(self) {
        self.db.drop().await;
    }
}

fn address(name: &str) -> Value {
    json!({"name": name, "line1": "1 Main St", "city": "Berlin", "postal_code": "10115",
           "country": "DE"})
}

#[tokio::test]
async fn the_address_book_adds_edits_removes_and_keeps_one_default_of_each_kind() {
    let app = TestApp::spawn().await;
    let (alice_id, alice) = app.token(Role::Customer).await;
    let (_, bob) = app.token(Role::Customer).await;

    let (status, body) = app
        .post(
            "/api/me/addresses",
            None,
            json!({"address": address("Alice")}),
        )
        .await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, body) = app
        .post(
            "/api/me/addresses",
            Some(&alice),
            json!({"label": "Home", "address": address("Alice"), "default_shipping": true,
                   "default_billing": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let home: Uuid = body["address_id"].as_str().unwrap().parse().unwrap();
    let (status, body) = app
        .post(
            "/api/me/addresses",
            Some(&alice),
            json!({"label": "Office", "address": address("Alice at work"), "default_shipping": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let office: Uuid = body["address_id"].as_str().unwrap().parse().unwrap();

    // bad input: typed errors naming the field
    let mut bad_country = address("Alice");
    bad_country["country"] = json!("Germany");
    let (status, body) = app
        .post(
            "/api/me/addresses",
            Some(&alice),
            json!({"address": bad_country}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert!(
        body["detail"].as_str().unwrap().contains("address"),
        "{body}"
    );
    let (status, body) = app
        .post(
            "/api/me/addresses",
            Some(&alice),
            json!({"label": "x".repeat(51), "address": address("Alice")}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );

    // the office took over as default shipping; home stays default billing
    let book = accounts::address_book::list(&app.db.pool, alice_id)
        .await
        .unwrap();
    assert_eq!(book.len(), 2);
    let by_id = |id: Uuid| book.iter().find(|a| a.id == id).unwrap().clone();
    assert!(!by_id(home).default_shipping && by_id(home).default_billing);
    assert!(by_id(office).default_shipping && !by_id(office).default_billing);
    assert_eq!(by_id(office).address.name(), "Alice at work");

    // set default: billing moves to the office
    let (status, body) = app
        .post(
            &format!("/api/me/addresses/{office}/default"),
            Some(&alice),
            json!({"billing": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .post(
            &format!("/api/me/addresses/{office}/default"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let book = accounts::address_book::list(&app.db.pool, alice_id)
        .await
        .unwrap();
    assert_eq!(
        book.iter()
            .filter(|a| a.default_billing)
            .map(|a| a.id)
            .collect::<Vec<_>>(),
        vec![office]
    );

    // edit
    let (status, body) = app
        .put(
            &format!("/api/me/addresses/{home}"),
            Some(&alice),
            json!({"label": "Old home", "address": {"name": "Alice", "line1": "2 Side St",
                   "line2": "Apt 3", "city": "Hamburg", "postal_code": "20095", "country": "DE"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let home_now = accounts::address_book::find(&app.db.pool, alice_id, home)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            home_now.label.unwrap().as_str(),
            home_now.address.city(),
            home_now.address.line2()
        ),
        ("Old home", "Hamburg", Some("Apt 3"))
    );

    // another customer sees none of it
    for (method, path, body) in [
        (
            Method::PUT,
            format!("/api/me/addresses/{home}"),
            Some(json!({"address": address("Bob")})),
        ),
        (Method::DELETE, format!("/api/me/addresses/{home}"), None),
        (
            Method::POST,
            format!("/api/me/addresses/{home}/default"),
            Some(json!({"shipping": true})),
        ),
    ] {
        let (status, answer) = app.send(method, &path, Some(&bob), None, body).await;
        assert_problem(status, &answer, StatusCode::NOT_FOUND, "not_found");
    }

    // remove: the office's defaults go with it
    let (status, body) = app
        .delete(&format!("/api/me/addresses/{office}"), Some(&alice))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .delete(&format!("/api/me/addresses/{office}"), Some(&alice))
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");
    let book = accounts::address_book::list(&app.db.pool, alice_id)
        .await
        .unwrap();
    assert_eq!(book.iter().map(|a| a.id).collect::<Vec<_>>(), vec![home]);
    assert!(!book[0].default_shipping && !book[0].default_billing);
    app.finish().await;
}

#[tokio::test]
async fn the_address_book_is_bounded() {
    let app = TestApp::spawn().await;
    let (_, alice) = app.token(Role::Customer).await;
    for _ in 0..accounts::address_book::MAX_ADDRESSES {
        let (status, body) = app
            .post(
                "/api/me/addresses",
                Some(&alice),
                json!({"address": address("A")}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = app
        .post(
            "/api/me/addresses",
            Some(&alice),
            json!({"address": address("A")}),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    app.finish().await;
}

#[tokio::test]
async fn the_profile_changes_name_and_phone_and_refuses_bad_ones() {
    let app = TestApp::spawn().await;
    let (alice_id, alice) = app.token(Role::Customer).await;
    let (status, body) = app
        .put(
            "/api/me/profile",
            Some(&alice),
            json!({"name": "  Alice Liddell ", "phone": "+49 (30) 123-4567"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["name"], &body["phone"]),
        (&json!("Alice Liddell"), &json!("+49301234567"))
    );
    let profile = accounts::profile::load(&app.db.pool, alice_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(profile.phone.as_deref(), Some("+49301234567"));
    for bad in [
        json!({"name": "", "phone": null}),
        json!({"name": "Alice", "phone": "call me"}),
        json!({"name": "x".repeat(101)}),
    ] {
        let (status, body) = app.put("/api/me/profile", Some(&alice), bad).await;
        assert_problem(
            status,
            &body,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        );
    }
    let (status, body) = app
        .put("/api/me/profile", Some(&alice), json!({"name": "Alice"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["phone"], Value::Null, "no phone given: removed");
    let (status, body) = app
        .put("/api/me/profile", None, json!({"name": "Alice"}))
        .await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    app.finish().await;
}

/// The shipping address of the cart's `CartCheckedOut` event.
async fn shipped_to(app: &TestApp, cart_id: &str) -> Value {
    let payload: Value = sqlx::query_scalar(
        "SELECT payload FROM events
          WHERE aggregate_type = 'cart' AND aggregate_id = $1 AND event_type = 'CartCheckedOut'",
    )
    .bind(cart_id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    payload["CartCheckedOut"]["shipping_address"].clone()
}

#[tokio::test]
async fn a_checkout_ships_to_a_saved_address_by_id_or_to_the_default() {
    let app = TestApp::spawn().await;
    let (_, staff) = app.token(Role::Staff).await;
    let (_, alice) = app.token(Role::Customer).await;
    let (_, bob) = app.token(Role::Customer).await;
    let (status, body) = app
        .post(
            "/api/products",
            Some(&staff),
            json!({"sku": "MUG-1", "name": "Mug", "description": "d", "category": "tests",
                   "price": {"amount_minor": 1200, "currency": "EUR"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let cart = |token: String| {
        let app = &app;
        async move {
            let (status, body) = app.post("/api/carts", Some(&token), json!({})).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            let id = body["cart_id"].as_str().unwrap().to_owned();
            let (status, body) = app
                .post(
                    &format!("/api/carts/{id}/items"),
                    Some(&token),
                    json!({"sku": "MUG-1", "quantity": 1}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            id
        }
    };
    let (_, body) = app
        .post(
            "/api/me/addresses",
            Some(&alice),
            json!({"address": address("Alice at home"), "default_shipping": true}),
        )
        .await;
    let home = body["address_id"].as_str().unwrap().to_owned();
    let (_, body) = app
        .post(
            "/api/me/addresses",
            Some(&alice),
            json!({"address": address("Alice at work")}),
        )
        .await;
    let office = body["address_id"].as_str().unwrap().to_owned();
    let (_, body) = app
        .post(
            "/api/me/addresses",
            Some(&bob),
            json!({"address": address("Bob")}),
        )
        .await;
    let bobs = body["address_id"].as_str().unwrap().to_owned();

    let first = cart(alice.clone()).await;
    let checkout = format!("/api/carts/{first}/checkout");
    // refused: both, someone else's address, an unknown one
    for body in [
        json!({"shipping_address": address("A"), "shipping_address_id": office,
               "payment_method": "pm_card_visa"}),
        json!({"shipping_address_id": bobs, "payment_method": "pm_card_visa"}),
        json!({"shipping_address_id": Uuid::new_v4(), "payment_method": "pm_card_visa"}),
    ] {
        let (status, answer) = app.post(&checkout, Some(&alice), body).await;
        assert_problem(
            status,
            &answer,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        );
    }
    let (status, body) = app
        .post(
            &checkout,
            Some(&alice),
            json!({"shipping_address_id": office, "payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(shipped_to(&app, &first).await["name"], "Alice at work");

    // neither given: the default shipping address
    let second = cart(alice.clone()).await;
    let (status, body) = app
        .post(
            &format!("/api/carts/{second}/checkout"),
            Some(&alice),
            json!({"payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(shipped_to(&app, &second).await["name"], "Alice at home");
    let _ = home;

    // bob has no default: neither given is refused
    let third = cart(bob.clone()).await;
    let (status, body) = app
        .post(
            &format!("/api/carts/{third}/checkout"),
            Some(&bob),
            json!({"payment_method": "pm_card_visa"}),
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

async fn register(app: &TestApp, email: &str, device: &str) -> Value {
    let (status, body) = app
        .send(
            Method::POST,
            "/api/auth/register",
            None,
            Some(device),
            Some(json!({"email": email, "password": "a long password", "name": "Ada"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

async fn login(app: &TestApp, email: &str, password: &str, device: &str) -> (StatusCode, Value) {
    app.send(
        Method::POST,
        "/api/auth/login",
        None,
        Some(device),
        Some(json!({"email": email, "password": password})),
    )
    .await
}

#[tokio::test]
async fn sessions_are_listed_with_their_device_and_revoked_one_or_all_at_once() {
    let app = TestApp::spawn().await;
    let email = "ada@example.com";
    let phone = register(&app, email, "Phone/1.0 (Android 15)").await;
    let (_, laptop) = login(&app, email, "a long password", "Laptop/2.0 (Linux)").await;
    let (_, tablet) = login(&app, email, "a long password", "Tablet/3.0").await;
    let account: Uuid = phone["customer_id"].as_str().unwrap().parse().unwrap();
    let sessions = accounts::list_sessions(&app.db.pool, account)
        .await
        .unwrap();
    assert_eq!(sessions.len(), 3);
    let mut devices: Vec<_> = sessions.iter().filter_map(|s| s.device.clone()).collect();
    devices.sort();
    assert_eq!(
        devices,
        ["Laptop/2.0 (Linux)", "Phone/1.0 (Android 15)", "Tablet/3.0"]
    );
    // a refresh is a use: the tablet becomes the most recently used
    let (status, tablet) = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": tablet["refresh_token"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tablet}");
    let sessions = accounts::list_sessions(&app.db.pool, account)
        .await
        .unwrap();
    assert_eq!(sessions[0].device.as_deref(), Some("Tablet/3.0"));
    assert!(sessions[0].last_used_at > sessions[0].created_at);

    // revoke the laptop's session from the phone
    let laptop_session = sessions
        .iter()
        .find(|s| s.device.as_deref() == Some("Laptop/2.0 (Linux)"))
        .unwrap()
        .id;
    let phone_token = phone["access_token"].as_str().unwrap();
    let (_, other) = app.token(Role::Customer).await;
    let (status, body) = app
        .delete(
            &format!("/api/auth/sessions/{laptop_session}"),
            Some(&other),
        )
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = app
        .delete(
            &format!("/api/auth/sessions/{laptop_session}"),
            Some(phone_token),
        )
        .await;
    assert_eq!(
        (status, &body["ended"]),
        (StatusCode::OK, &json!(1)),
        "{body}"
    );
    let (status, body) = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": laptop["refresh_token"]}),
        )
        .await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, body) = app
        .put(
            "/api/me/profile",
            laptop["access_token"].as_str(),
            json!({"name": "Ada"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(
        accounts::list_sessions(&app.db.pool, account)
            .await
            .unwrap()
            .len(),
        2
    );

    // sign out everywhere: the phone and the tablet
    let (status, body) = app
        .post("/api/auth/logout-all", Some(phone_token), json!({}))
        .await;
    assert_eq!(
        (status, &body["ended"]),
        (StatusCode::OK, &json!(2)),
        "{body}"
    );
    for session in [&phone, &tablet] {
        let (status, body) = app
            .post(
                "/api/auth/refresh",
                None,
                json!({"refresh_token": session["refresh_token"]}),
            )
            .await;
        assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
        let (status, body) = app
            .put(
                "/api/me/profile",
                session["access_token"].as_str(),
                json!({"name": "Ada"}),
            )
            .await;
        assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    assert!(accounts::list_sessions(&app.db.pool, account)
        .await
        .unwrap()
        .is_empty());
    let (status, body) = app.post("/api/auth/logout-all", None, json!({})).await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    app.finish().await;
}

/// The reset messages in the outbox for `recipient`, newest last.
async fn reset_mails(app: &TestApp, recipient: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT body FROM notification_outbox WHERE kind = 'password-reset' AND recipient = $1
          ORDER BY created_at",
    )
    .bind(recipient)
    .fetch_all(&app.db.pool)
    .await
    .unwrap()
}

/// Waits for the `count`-th reset message to `recipient` and returns its code.
async fn reset_code(app: &TestApp, recipient: &str, count: usize) -> String {
    for _ in 0..100 {
        let mails = reset_mails(app, recipient).await;
        if mails.len() >= count {
            let body = &mails[count - 1];
            return body
                .lines()
                .map(str::trim)
                .find(|line| line.len() == 64 && line.bytes().all(|b| b.is_ascii_hexdigit()))
                .unwrap_or_else(|| panic!("no code in {body}"))
                .to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no reset mail for {recipient}");
}

#[tokio::test]
async fn a_password_reset_is_mailed_single_use_expiring_and_tells_nothing_about_unknown_addresses()
{
    let app = TestApp::spawn().await;
    let email = "grace@example.com";
    let session = register(&app, email, "Browser/1").await;

    let (known_status, known) = app
        .post("/api/auth/password-reset", None, json!({"email": email}))
        .await;
    let (unknown_status, unknown) = app
        .post(
            "/api/auth/password-reset",
            None,
            json!({"email": "nobody@example.com"}),
        )
        .await;
    assert_eq!(known_status, StatusCode::ACCEPTED, "{known}");
    assert_eq!((unknown_status, &unknown), (known_status, &known));
    let (status, body) = app
        .post(
            "/api/auth/password-reset",
            None,
            json!({"email": "not an address"}),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );

    let code = reset_code(&app, email, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(reset_mails(&app, "nobody@example.com").await.is_empty());
    // only the code's hash is stored
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT token_hash FROM password_reset_tokens")
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], code.as_bytes());
    assert_eq!(stored[0].len(), 32);

    // a weak password and a wrong code change nothing
    let confirm = "/api/auth/password-reset/confirm";
    let (status, body) = app
        .post(
            confirm,
            None,
            json!({"token": code, "new_password": "short"}),
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
            confirm,
            None,
            json!({"token": "0".repeat(64), "new_password": "a brand new password"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");

    let (status, body) = app
        .post(
            confirm,
            None,
            json!({"token": code, "new_password": "a brand new password"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ended_sessions"], 1, "{body}");
    // the old session is over, the old password refused, the new one accepted
    let (status, body) = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": session["refresh_token"]}),
        )
        .await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, _) = login(&app, email, "a long password", "Browser/1").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = login(&app, email, "a brand new password", "Browser/1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // single use
    let (status, body) = app
        .post(
            confirm,
            None,
            json!({"token": code, "new_password": "yet another password"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");

    // expired
    let (status, _) = app
        .post("/api/auth/password-reset", None, json!({"email": email}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let late = reset_code(&app, email, 2).await;
    sqlx::query("UPDATE password_reset_tokens SET expires_at = now() - interval '1 second'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let (status, body) = app
        .post(
            confirm,
            None,
            json!({"token": late, "new_password": "yet another password"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    app.finish().await;
}

#[tokio::test]
async fn password_reset_requests_are_rate_limited() {
    let app = TestApp::spawn_with(ApiConfig {
        auth_per_minute: 5,
        ..ApiConfig::default()
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (status, _) = app
            .post(
                "/api/auth/password-reset",
                None,
                json!({"email": "someone@example.com"}),
            )
            .await;
        statuses.push(status);
    }
    assert_eq!(statuses[0], StatusCode::ACCEPTED);
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    app.finish().await;
}
