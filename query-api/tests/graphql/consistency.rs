//! Read-your-writes: a query passing a command's position sees its effect, waiting for the
//! projector within the bound; past the bound it gets `not_yet_consistent` with both positions.

use std::time::Duration;

use command_api::auth::Role;
use query_api::QueryConfig;
use serde_json::json;

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
