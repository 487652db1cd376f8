//! Registration, login, refresh-token rotation, logout, sessions and the auth rate limits.

use std::net::SocketAddr;
use std::time::Duration;

use accounts::{tokens::Secret, Role};
use command_api::{ApiConfig, AppState};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{assert_problem, TestApp};

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
