//! Protection: depth, complexity and size limits, introspection and GraphiQL switches, and the
//! request-level errors (bad token, bad body) — each with its code.

use accounts::Role;
use query_api::QueryConfig;
use serde_json::{json, Value};

use crate::harness::{code, no_errors, Harness};

#[tokio::test]
async fn limits_refuse_expensive_and_oversized_queries_with_codes() {
    let h = Harness::start_with(QueryConfig {
        max_depth: 6,
        max_complexity: 300,
        max_query_bytes: 2_048,
        ..QueryConfig::default()
    })
    .await;
    h.catalog().await;
    h.project().await;

    let fine = h
        .gql(
            None,
            "{ products(first: 10) { edges { node { sku } } } }",
            json!({}),
        )
        .await;
    no_errors(&fine);
    // a page of 100 multiplies its selection's cost
    let costly = h
        .gql(
            None,
            "{ products(first: 100) { edges { node { sku name category inStock } } } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&costly), "query_too_complex", "{costly}");
    assert_eq!(costly["data"], Value::Null);
    let deep = h
        .gql(
            None,
            "{ products { edges { node { price { currency } } } facets { categories { category } } } \
               a: products { edges { node { sku } } } }",
            json!({}),
        )
        .await;
    no_errors(&deep);
    let too_deep = "{ me { orders { edges { node { lines { unitPrice { currency } } } } } } }";
    let (_, token) = h.account(Role::Customer).await;
    assert_eq!(
        code(&h.gql(Some(&token), too_deep, json!({})).await),
        "query_too_complex"
    );

    // size: the query text is bounded
    let padding = " ".repeat(3_000);
    let (status, large) = h
        .gql_with(
            None,
            &format!("{{ products {{ totalCount }} {padding} }}"),
            json!({}),
            &[],
        )
        .await;
    assert_eq!(status, 413);
    assert_eq!(code(&large), "payload_too_large");

    // request-level errors
    let (status, bad_token) = h
        .gql_with(
            Some("not-a-token"),
            "{ products { totalCount } }",
            json!({}),
            &[],
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(code(&bad_token), "unauthorized");
    let response = h
        .client
        .post(format!("{}/graphql", h.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(code(&response.json::<Value>().await.unwrap()), "validation");
    let response = h
        .client
        .post(format!("{}/graphql", h.base))
        .header("content-type", "text/plain")
        .body("{ products { totalCount } }")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    // unknown fields and syntax errors are validation errors
    assert_eq!(
        code(&h.gql(None, "{ nope }", json!({})).await),
        "validation"
    );
    assert_eq!(
        code(&h.gql(None, "{ products {", json!({})).await),
        "validation"
    );

    // development defaults: introspection and GraphiQL on
    let introspection = h
        .gql(None, "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(
        introspection["data"]["__schema"]["queryType"]["name"],
        "QueryRoot"
    );
    let page = h
        .client
        .get(format!("{}/graphql", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("GraphiQL"));
    h.drop().await;
}

#[tokio::test]
async fn introspection_and_graphiql_can_be_turned_off() {
    let h = Harness::start_with(QueryConfig {
        introspection: false,
        graphiql: false,
        ..QueryConfig::default()
    })
    .await;
    let introspection = h
        .gql(None, "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(
        introspection["data"]["__schema"],
        Value::Null,
        "{introspection}"
    );
    let page = h
        .client
        .get(format!("{}/graphql", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 404);
    h.drop().await;
}
