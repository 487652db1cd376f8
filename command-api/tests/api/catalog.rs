//! The catalog and stock routes: staff only, input validated.

use accounts::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{assert_problem, TestApp};

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
