//! The auditor's `history`, `stateAt` and `verify`, straight from the event store.

use accounts::Role;
use serde_json::{json, Value};

use crate::harness::{assert_snapshot, code, no_errors, Harness};

#[tokio::test]
async fn auditors_read_history_fold_state_and_verify_chains() {
    let h = Harness::start().await;
    h.catalog().await;
    let (alice, alice_token) = h.account(Role::Customer).await;
    let (_, staff_token) = h.account(Role::Staff).await;
    let (_, auditor) = h.account(Role::Auditor).await;
    let (order, _) = h.confirmed_order(Some(alice), 7).await;
    let id = order.to_string();

    let history = "query($id: String!, $after: String) {
      history(aggregateType: \"order\", aggregateId: $id, first: 2, after: $after) {
        totalCount pageInfo { hasNextPage endCursor }
        edges { node { sequence eventType eventVersion position recordedAt
          actor { id role } correlationId causationId commandId payload } } } }";
    let page1 = h.gql(Some(&auditor), history, json!({"id": id})).await;
    no_errors(&page1);
    let connection = &page1["data"]["history"];
    assert_eq!(connection["totalCount"], 3);
    assert_eq!(connection["edges"][0]["node"]["eventType"], "OrderPlaced");
    assert_eq!(connection["edges"][0]["node"]["actor"]["id"], "test");
    assert_eq!(connection["edges"][0]["node"]["actor"]["role"], "system");
    assert!(connection["edges"][0]["node"]["correlationId"].is_string());
    assert_eq!(connection["edges"][1]["node"]["sequence"], 2);
    assert_snapshot("history", &page1);
    let after = connection["pageInfo"]["endCursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let page2 = h
        .gql(Some(&auditor), history, json!({"id": id, "after": after}))
        .await;
    assert_eq!(
        page2["data"]["history"]["edges"][0]["node"]["eventType"],
        "OrderConfirmed"
    );
    assert_eq!(page2["data"]["history"]["pageInfo"]["hasNextPage"], false);

    let state_at = "query($id: String!, $version: Int, $at: DateTime) {
      stateAt(aggregateType: \"order\", aggregateId: $id, version: $version, at: $at) {
        version asOf state } }";
    let first = h
        .gql(Some(&auditor), state_at, json!({"id": id, "version": 1}))
        .await;
    no_errors(&first);
    assert_eq!(first["data"]["stateAt"]["version"], 1);
    let state = &first["data"]["stateAt"]["state"];
    assert_eq!(state["placed"]["status"], "AwaitingStock", "{state}");
    let now = h
        .gql(
            Some(&auditor),
            state_at,
            json!({"id": id, "at": chrono::Utc::now()}),
        )
        .await;
    assert_eq!(
        now["data"]["stateAt"]["state"]["placed"]["status"],
        "Confirmed"
    );
    let before_any = h
        .gql(
            Some(&auditor),
            state_at,
            json!({"id": id, "at": "2000-01-01T00:00:00Z"}),
        )
        .await;
    no_errors(&before_any);
    assert_eq!(before_any["data"]["stateAt"], Value::Null);
    let both = h
        .gql(
            Some(&auditor),
            state_at,
            json!({"id": id, "version": 1, "at": chrono::Utc::now()}),
        )
        .await;
    assert_eq!(code(&both), "validation");
    let neither = h.gql(Some(&auditor), state_at, json!({"id": id})).await;
    assert_eq!(code(&neither), "validation");

    let verify = "query($id: String!) { verify(aggregateType: \"order\", aggregateId: $id) {
        intact events firstBroken { sequence problem description } } }";
    let intact = h.gql(Some(&auditor), verify, json!({"id": id})).await;
    no_errors(&intact);
    assert_eq!(intact["data"]["verify"]["intact"], true);
    assert_eq!(intact["data"]["verify"]["events"], 3);
    // an edit made in SQL (by someone who can switch off the immutability trigger) breaks the
    // chain at that event
    sqlx::query("ALTER TABLE events DISABLE TRIGGER events_immutable")
        .execute(&h.db.pool)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE events SET payload = jsonb_set(payload, '{OrderConfirmed,at}', '\"2001-01-01T00:00:00Z\"')
          WHERE aggregate_type = 'order' AND aggregate_id = $1 AND sequence = 3",
    )
    .bind(&id)
    .execute(&h.db.pool)
    .await
    .unwrap();
    let broken = h.gql(Some(&auditor), verify, json!({"id": id})).await;
    assert_eq!(broken["data"]["verify"]["intact"], false, "{broken}");
    assert_eq!(broken["data"]["verify"]["firstBroken"]["sequence"], 3);
    assert_eq!(
        broken["data"]["verify"]["firstBroken"]["problem"],
        "content_altered"
    );

    // only auditors; unknown aggregate types are refused
    for token in [Some(alice_token.as_str()), Some(staff_token.as_str())] {
        assert_eq!(
            code(&h.gql(token, verify, json!({"id": id})).await),
            "forbidden"
        );
    }
    assert_eq!(
        code(&h.gql(None, history, json!({"id": id})).await),
        "unauthorized"
    );
    let unknown = h
        .gql(
            Some(&auditor),
            "{ verify(aggregateType: \"spaceship\", aggregateId: \"x\") { intact } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&unknown), "validation");
    h.drop().await;
}
