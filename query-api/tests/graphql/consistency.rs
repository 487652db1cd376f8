//! Read-your-writes: a query passing a command's position sees its effect, waiting for the
//! projector within the bound; past the bound it gets `not_yet_consistent` with both positions.

use std::time::Duration;

use accounts::Role;
use query_api::consistency::{RequestPosition, Waits};
use query_api::viewer::Viewer;
use query_api::QueryConfig;
use serde_json::json;
use uuid::Uuid;

use crate::harness::{code, no_errors, Harness};

const STATUS: &str = "query($id: UUID!, $p: String) { order(id: $id, position: $p) { status } }";

#[tokio::test]
async fn a_query_with_a_commands_position_sees_its_effect_or_a_typed_error() {
    let h = Harness::start_with(QueryConfig {
        consistency_wait: Duration::from_millis(1_500),
        ..QueryConfig::default()
    })
    .await;
    h.catalog().await;
    let (alice, token) = h.account(Role::Customer).await;
    let (order, _) = h.confirmed_order(Some(alice), 1).await;
    h.project().await;

    // the projector is not running: past the bound, a typed error with both positions
    let position = h.ship(order).await;
    let started = std::time::Instant::now();
    let late = h
        .gql(
            Some(&token),
            STATUS,
            json!({"id": order, "p": position.to_string()}),
        )
        .await;
    assert!(started.elapsed() >= Duration::from_millis(1_400));
    assert_eq!(code(&late), "not_yet_consistent", "{late}");
    let extensions = &late["errors"][0]["extensions"];
    assert_eq!(extensions["requiredPosition"], position.to_string());
    let current: eventlog::LogPosition = extensions["currentPosition"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(current < position);
    // without a position: what the read model has now
    let stale = h.gql(Some(&token), STATUS, json!({"id": order})).await;
    assert_eq!(stale["data"]["order"]["status"], "CONFIRMED", "{stale}");

    // the projector catches up while the query waits: the query sees the shipment
    let (seen, ()) = tokio::join!(
        h.gql(
            Some(&token),
            STATUS,
            json!({"id": order, "p": position.to_string()})
        ),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            h.project().await;
        }
    );
    no_errors(&seen);
    assert_eq!(seen["data"]["order"]["status"], "SHIPPED");

    // the same through the Shop-Position header, for every field of the request
    let delivered = h
        .stores
        .orders
        .execute(
            &order.to_string(),
            domain::OrderCommand::Deliver {
                at: chrono::Utc::now(),
            },
            &crate::harness::meta(),
        )
        .await
        .unwrap()
        .position
        .unwrap()
        .to_string();
    let header = [("shop-position", delivered.as_str())];
    let ((status, by_header), ()) = tokio::join!(
        h.gql_with(Some(&token), STATUS, json!({"id": order}), &header),
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            h.project().await;
        }
    );
    assert_eq!(status, 200);
    assert_eq!(
        by_header["data"]["order"]["status"], "DELIVERED",
        "{by_header}"
    );
    let (status, bad) = h
        .gql_with(
            Some(&token),
            STATUS,
            json!({"id": order}),
            &[("shop-position", "soon")],
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(code(&bad), "validation");
    let bad_argument = h
        .gql(Some(&token), STATUS, json!({"id": order, "p": "-1.5"}))
        .await;
    assert_eq!(code(&bad_argument), "validation");
    h.drop().await;
}

/// Runs `query` in-process with `position` for the whole request; the response and how many
/// times the request polled a read model's position.
async fn run_counting_polls(
    h: &Harness,
    query: &str,
    variables: serde_json::Value,
    position: Option<eventlog::LogPosition>,
) -> (serde_json::Value, u64) {
    let waits = Waits::default();
    let request = async_graphql::Request::new(query)
        .variables(async_graphql::Variables::from_json(variables));
    let response = h
        .api
        .execute_with_waits(
            request,
            Viewer::Guest,
            RequestPosition(position),
            waits.clone(),
        )
        .await;
    (serde_json::to_value(&response).unwrap(), waits.polls())
}

fn codes(response: &serde_json::Value) -> Vec<String> {
    response["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["extensions"]["code"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn many_fields_waiting_for_a_position_wait_once_per_read_model() {
    let h = Harness::start_with(QueryConfig {
        consistency_wait: Duration::from_millis(300),
        ..QueryConfig::default()
    })
    .await;
    // a position no read model will reach
    let unreachable = eventlog::LogPosition {
        transaction_id: i64::MAX / 2,
        global_position: 1,
    };
    // one wait of 300 ms polls about 9 times (5, 10, 20, 40, 50... ms apart)
    let one_wait = 15;

    // 40 aliased fields of one read model, each with the position as its argument
    let fields: String = (0..40)
        .map(|n| {
            format!(
                "o{n}: order(id: \"{}\", position: $p) {{ status }} ",
                Uuid::new_v4()
            )
        })
        .collect();
    let query = format!("query($p: String) {{ {fields} }}");
    let (response, polls) =
        run_counting_polls(&h, &query, json!({"p": unreachable.to_string()}), None).await;
    assert_eq!(
        codes(&response),
        vec!["not_yet_consistent"; 40],
        "{response}"
    );
    assert!(polls <= one_wait, "{polls} polls for one read model");

    // the same through the request's header, over two read models: one wait each
    let fields: String = (0..20)
        .map(|n| {
            format!(
                "o{n}: order(id: \"{}\") {{ status }} p{n}: product(sku: \"SKU-{n}\") {{ name }} ",
                Uuid::new_v4()
            )
        })
        .collect();
    let (response, polls) =
        run_counting_polls(&h, &format!("{{ {fields} }}"), json!({}), Some(unreachable)).await;
    assert_eq!(
        codes(&response),
        vec!["not_yet_consistent"; 40],
        "{response}"
    );
    assert!(polls <= 2 * one_wait, "{polls} polls for two read models");

    // a position argument costs complexity: a query cannot fan waits out
    let fields: String = (0..60)
        .map(|n| {
            format!(
                "o{n}: order(id: \"{}\", position: $p) {{ status }} ",
                Uuid::new_v4()
            )
        })
        .collect();
    let query = format!("query($p: String) {{ {fields} }}");
    let (response, polls) =
        run_counting_polls(&h, &query, json!({"p": unreachable.to_string()}), None).await;
    assert_eq!(codes(&response), vec!["query_too_complex"], "{response}");
    assert_eq!(polls, 0);
    h.drop().await;
}
