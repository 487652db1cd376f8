//! Carts: owners, guests and their cart tokens, currencies, merging, checkout.

use accounts::Role;
use command_api::ApiConfig;
use domain::{Currency, Money};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{assert_problem, new_cart_token, TestApp};

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
    // from then on the cart is in USD, and MUG-1 has no USD price
    let (status, body) = app
        .post(
            &items,
            Some(&customer),
            json!({"sku": "MUG-1", "quantity": 1}),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "no_price_in_currency");
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
    assert_problem(status, &body, StatusCode::CONFLICT, "no_price_in_currency");
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
