//! Input at the edge: bodies that are not JSON, too big or unrouted, and control characters.

use accounts::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{assert_problem, TestApp};

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
