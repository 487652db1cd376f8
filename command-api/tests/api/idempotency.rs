//! The `Idempotency-Key` rules: the first answer is kept, a different body is refused, keys expire.

use std::time::Duration;

use accounts::Role;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{assert_problem, new_cart_token, TestApp};

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
