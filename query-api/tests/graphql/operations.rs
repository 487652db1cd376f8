//! The operator's `readModels`: each PostgreSQL read model's position, lag and state, with a
//! running rebuild's progress.

use accounts::Role;
use serde_json::json;

use crate::harness::{code, no_errors, Harness};

const READ_MODELS: &str =
    "{ readModels { name position lagEvents lagSeconds state rebuild { eventsDone eventsTotal } } }";

#[tokio::test]
async fn staff_see_each_read_models_position_lag_and_a_rebuilds_progress() {
    let h = Harness::start().await;
    h.catalog().await;
    h.project().await;
    let (_, staff) = h.account(Role::Staff).await;
    let (_, auditor) = h.account(Role::Auditor).await;

    let caught_up = h.gql(Some(&staff), READ_MODELS, json!({})).await;
    no_errors(&caught_up);
    let models = caught_up["data"]["readModels"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["catalog", "stock", "orders", "reviews"]);
    for model in models {
        assert_eq!(model["state"], "live", "{model}");
        assert_eq!(model["lagEvents"], 0, "{model}");
        assert!(model["rebuild"].is_null(), "{model}");
        assert!(model["position"].as_str().unwrap().contains('.'), "{model}");
    }

    // a product written and not projected yet: the catalog lags by its events
    h.product("LATE-1", "Late", "misc", 100, 1).await;
    let behind = h.gql(Some(&staff), READ_MODELS, json!({})).await;
    let catalog = &behind["data"]["readModels"][0];
    assert!(catalog["lagEvents"].as_i64().unwrap() >= 1, "{catalog}");

    // a rebuild in progress (its next version exists, its checkpoint at the start)
    sqlx::query("CREATE SCHEMA rm_orders__next")
        .execute(&h.db.pool)
        .await
        .unwrap();
    let building = h.gql(Some(&staff), READ_MODELS, json!({})).await;
    let orders = &building["data"]["readModels"][2];
    assert_eq!(orders["state"], "building", "{orders}");
    assert_eq!(orders["rebuild"]["eventsDone"], 0, "{orders}");
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&h.db.pool)
        .await
        .unwrap();
    assert_eq!(orders["rebuild"]["eventsTotal"], total, "{orders}");

    assert_eq!(
        code(&h.gql(Some(&auditor), READ_MODELS, json!({})).await),
        "forbidden"
    );
    assert_eq!(
        code(&h.gql(None, READ_MODELS, json!({})).await),
        "unauthorized"
    );
    h.drop().await;
}
