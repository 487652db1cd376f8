//! Product reviews over real HTTP against the real PostgreSQL: one review per customer and
//! product, the verified-purchase badge proven from the order streams (only after delivery),
//! one helpful vote per customer, staff moderation, and typed errors for bad input and roles.

mod support;
use support::assert_problem;

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
        let db = TestDatabase::create(
            eventlog::migrate::MIGRATIONS
                .iter()
                .chain(command_api::MIGRATIONS),
            8,
        )
        .await;
        let state = AppState::new(
            db.pool.clone(),
            &Secret::new(vec![42; 32]).unwrap(),
            ApiConfig::default(),
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
        token: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, token, body).await
    }

    /// A placed and confirmed order of `customer` for one MUG-1 (the saga's work, done here
    /// directly on the order stream).
    async fn confirmed_order(&self, customer: Uuid) -> Uuid {
        self.confirmed_order_of(customer, "MUG-1").await
    }

    /// The same for one unit of `sku`.
    async fn confirmed_order_of(&self, customer: Uuid, sku: &str) -> Uuid {
        let order_id = Uuid::new_v4();
        let eur = Currency::parse("EUR").unwrap();
        let meta = || EventMetadata::new(Actor::system("test"));
        let id = order_id.to_string();
        let orders = &self.state.stores.orders;
        let place = OrderCommand::Place {
            order_number: OrderNumber(1),
            customer: Some(CustomerId::new(customer)),
            cart_id: CartId::new(Uuid::new_v4()),
            lines: vec![OrderLine {
                sku: Sku::parse(sku).unwrap(),
                name: "Mug".into(),
                quantity: Quantity::new(1).unwrap(),
                unit_price: Money::new(1200, eur),
            }],
            currency: eur,
            discount: Money::zero(eur),
            tax: Money::new(228, eur),
            shipping: Money::new(500, eur),
            shipping_address: Address::new("A", "1 Main St", None, "Berlin", "10115", "DE")
                .unwrap(),
            payment_method: "pm_card_visa".into(),
            placed_at: chrono::Utc::now(),
        };
        orders.execute(&id, place, &meta()).await.unwrap();
        let at = chrono::Utc::now();
        orders
            .execute(&id, OrderCommand::MarkStockReserved { at }, &meta())
            .await
            .unwrap();
        let confirm = OrderCommand::Confirm {
            payment_id: PaymentId::new(Uuid::new_v4()),
            at,
        };
        orders.execute(&id, confirm, &meta()).await.unwrap();
        order_id
    }

    async fn review(&self, review_id: &str) -> domain::review::WrittenReview {
        self.state
            .stores
            .reviews
            .load(review_id)
            .await
            .unwrap()
            .aggregate
            .written()
            .cloned()
            .expect("the review exists")
    }

    async fn finish(self) {
        self.db.drop().await;
    }
}

fn review(rating: i64, title: &str) -> Value {
    json!({"rating": rating, "title": title, "text": "Keeps coffee warm."})
}

#[tokio::test]
async fn one_review_per_customer_and_product_with_the_badge_only_after_delivery() {
    let app = TestApp::spawn().await;
    let (_, staff) = app.token(Role::Staff).await;
    let (_, alice) = app.token(Role::Customer).await;
    let (bob_id, bob) = app.token(Role::Customer).await;
    let (carol_id, carol) = app.token(Role::Customer).await;
    let (status, body) = app
        .post(
            "/api/products",
            &staff,
            json!({"sku": "MUG-1", "name": "Mug", "category": "kitchen",
                   "price": {"amount_minor": 1200, "currency": "EUR"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // alice never bought it: she may review, without the badge
    let (status, written) = app
        .post("/api/products/MUG-1/reviews", &alice, review(5, "Lovely"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{written}");
    assert_eq!(written["verified_purchase"], false);
    assert!(written["position"].is_string());
    let alice_review = written["review_id"].as_str().unwrap().to_owned();

    // a second review of the same product is refused; it is the same stream
    let (status, body) = app
        .post(
            "/api/products/MUG-1/reviews",
            &alice,
            review(1, "Changed my mind"),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "already_reviewed");
    assert_eq!(app.review(&alice_review).await.rating.stars(), 5);

    // bob's order is shipped, not delivered: no badge yet
    let bob_order = app.confirmed_order(bob_id).await;
    let (status, body) = app
        .post(&format!("/api/orders/{bob_order}/ship"), &staff, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, written) = app
        .post("/api/products/MUG-1/reviews", &bob, review(3, "Fine"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{written}");
    assert_eq!(written["verified_purchase"], false);
    let bob_review = written["review_id"].as_str().unwrap().to_owned();

    // once delivered, his edit earns the badge
    let (status, body) = app
        .post(
            &format!("/api/orders/{bob_order}/deliver"),
            &staff,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .send(
            Method::PUT,
            &format!("/api/reviews/{bob_review}"),
            &bob,
            review(4, "Fine, and sturdy"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let edited = app.review(&bob_review).await;
    assert!(edited.verified_purchase);
    assert_eq!(
        (edited.rating.stars(), edited.title.as_str()),
        (4, "Fine, and sturdy")
    );

    // carol's order was delivered before she wrote: badge at once
    let carol_order = app.confirmed_order(carol_id).await;
    for step in ["ship", "deliver"] {
        let (status, body) = app
            .post(
                &format!("/api/orders/{carol_order}/{step}"),
                &staff,
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, written) = app
        .post(
            "/api/products/MUG-1/reviews",
            &carol,
            review(2, "Too small"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{written}");
    assert_eq!(written["verified_purchase"], true);

    // the review is part of carol's data export
    let response = app
        .client
        .get(format!("{}/api/me/data", app.base))
        .bearer_auth(&carol)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let export: Value = response.json().await.unwrap();
    assert_eq!(export["reviews"].as_array().unwrap().len(), 1, "{export}");
    assert_eq!(export["reviews"][0]["title"], "Too small");
    assert_eq!(export["reviews"][0]["verified_purchase"], true);

    // only the author edits
    let (status, body) = app
        .send(
            Method::PUT,
            &format!("/api/reviews/{alice_review}"),
            &bob,
            review(1, "Bad"),
        )
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    app.finish().await;
}

#[tokio::test]
async fn helpful_votes_once_per_customer_and_staff_moderation() {
    let app = TestApp::spawn().await;
    let (_, staff) = app.token(Role::Staff).await;
    let (_, alice) = app.token(Role::Customer).await;
    let (_, bob) = app.token(Role::Customer).await;
    let (_, carol) = app.token(Role::Customer).await;
    let (status, _) = app
        .post(
            "/api/products",
            &staff,
            json!({"sku": "MUG-1", "name": "Mug", "category": "kitchen",
                   "price": {"amount_minor": 1200, "currency": "EUR"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, written) = app
        .post("/api/products/MUG-1/reviews", &alice, review(5, "Lovely"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{written}");
    let id = written["review_id"].as_str().unwrap().to_owned();
    let helpful = format!("/api/reviews/{id}/helpful");

    let (status, body) = app.post(&helpful, &bob, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.post(&helpful, &bob, json!({})).await;
    assert_problem(status, &body, StatusCode::CONFLICT, "already_voted");
    let (status, body) = app.post(&helpful, &alice, json!({})).await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app.post(&helpful, &staff, json!({})).await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(app.review(&id).await.helpful_voters.len(), 1);

    // customers do not moderate
    let hide = format!("/api/reviews/{id}/hide");
    let (status, body) = app.post(&hide, &bob, json!({"reason": "I disagree"})).await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    assert!(!app.review(&id).await.hidden);
    // staff do, with a reason
    let (status, body) = app.post(&hide, &staff, json!({"reason": " "})).await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert!(
        body["detail"].as_str().unwrap().starts_with("reason"),
        "{body}"
    );
    let (status, body) = app.post(&hide, &staff, json!({"reason": "spam"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["position"].is_string());
    assert!(app.review(&id).await.hidden);
    // a hidden review takes no votes
    let (status, body) = app.post(&helpful, &carol, json!({})).await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    // hiding again changes nothing
    let (status, body) = app.post(&hide, &staff, json!({"reason": "spam"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["position"], Value::Null);
    let (status, body) = app
        .post(
            &format!("/api/reviews/{id}/publish"),
            &staff,
            json!({"reason": "appeal accepted"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!app.review(&id).await.hidden);
    let (status, body) = app.post(&helpful, &carol, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.review(&id).await.helpful_voters.len(), 2);

    // an unknown review
    let (status, body) = app
        .post(
            &format!("/api/reviews/{}/helpful", Uuid::new_v4()),
            &bob,
            json!({}),
        )
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");
    app.finish().await;
}

#[tokio::test]
async fn bad_review_input_names_the_field_and_only_customers_review() {
    let app = TestApp::spawn().await;
    let (_, staff) = app.token(Role::Staff).await;
    let (_, alice) = app.token(Role::Customer).await;
    let (status, _) = app
        .post(
            "/api/products",
            &staff,
            json!({"sku": "MUG-1", "name": "Mug", "category": "kitchen",
                   "price": {"amount_minor": 1200, "currency": "EUR"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let path = "/api/products/MUG-1/reviews";
    for (body, field) in [
        (review(0, "Fine"), "rating"),
        (review(6, "Fine"), "rating"),
        (review(-300, "Fine"), "rating"),
        (review(4, "   "), "title"),
        (review(4, &"t".repeat(121)), "title"),
        (
            json!({"rating": 4, "title": "Fine", "text": "x".repeat(5_001)}),
            "text",
        ),
    ] {
        let (status, problem) = app.post(path, &alice, body).await;
        assert_problem(
            status,
            &problem,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        );
        assert!(
            problem["detail"].as_str().unwrap().starts_with(field),
            "{problem}"
        );
    }
    // nothing was written by the refusals
    let (status, _) = app.post(path, &alice, review(4, "Fine")).await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, body) = app
        .post(path, &alice, json!({"rating": 4, "title": "x", "stars": 5}))
        .await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST, "malformed_request");
    let (status, body) = app
        .post("/api/products/NOPE-1/reviews", &alice, review(4, "Fine"))
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = app
        .post("/api/products/mug/reviews", &alice, review(4, "Fine"))
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    // staff and guests do not review
    let (status, body) = app.post(path, &staff, review(4, "Fine")).await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let response = app
        .client
        .post(format!("{}{path}", app.base))
        .json(&review(4, "Fine"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    app.finish().await;
}

#[tokio::test]
async fn a_delivered_variant_earns_the_badge_on_its_products_review() {
    let app = TestApp::spawn().await;
    let (_, staff) = app.token(Role::Staff).await;
    let (dana_id, dana) = app.token(Role::Customer).await;
    for (path, body) in [
        (
            "/api/products",
            json!({"sku": "TEE-1", "name": "Tee", "category": "clothes",
                   "price": {"amount_minor": 2500, "currency": "EUR"}}),
        ),
        (
            "/api/products/TEE-1/variants",
            json!({"sku": "TEE-1-M", "option_values": {"size": "M"}}),
        ),
    ] {
        if path.ends_with("/variants") {
            let (status, body) = app
                .send(
                    Method::PUT,
                    "/api/products/TEE-1/options",
                    &staff,
                    json!({"options": [{"name": "size", "values": ["S", "M"]}]}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let (status, answer) = app.post(path, &staff, body).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    // dana bought the M variant, delivered; she reviews the product (the parent)
    let order = app.confirmed_order_of(dana_id, "TEE-1-M").await;
    for step in ["ship", "deliver"] {
        let (status, body) = app
            .post(&format!("/api/orders/{order}/{step}"), &staff, json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, written) = app
        .post("/api/products/TEE-1/reviews", &dana, review(5, "Fits"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{written}");
    assert_eq!(
        written["verified_purchase"], true,
        "a variant bought is the product bought"
    );
    app.finish().await;
}
