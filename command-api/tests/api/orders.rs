//! Orders: cancelled by their owner, shipped and refunded by staff.

use accounts::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::harness::{assert_problem, new_cart_token, place_order, TestApp};

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
