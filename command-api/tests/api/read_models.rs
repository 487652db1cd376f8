//! Operator rebuilds of read models.

use std::time::Duration;

use accounts::Role;
use reqwest::{Method, StatusCode};

use crate::harness::{assert_problem, TestApp};

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
