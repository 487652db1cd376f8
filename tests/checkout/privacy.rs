//! A customer's personal data end to end, with the real processes sealing it: after a checkout,
//! the shipping address is nowhere in the database or Redis in plaintext (events sealed, read
//! models redacted) but is in the customer's export; after erasure (staff REST route, then the
//! CLI again), the hash chains and an earlier anchor verify, a rebuild succeeds, and the name,
//! address and e-mail are nowhere, not even in the export; a wrong master key is refused by name.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use super::Stack;

const NAME: &str = "Philippa Quartermain";
const STREET: &str = "17 Larkspur Crescent";
const EMAIL: &str = "philippa.quartermain@example.com";
const ANCHOR_KEY: &str = "privacy-test-anchor-key-0123456789abcdef";

/// Every row of every table of the database, as text, keyed by table.
async fn every_row(pool: &PgPool) -> Vec<(String, String)> {
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables
          WHERE table_type = 'BASE TABLE'
            AND table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut rows = Vec::new();
    for (schema, table) in tables {
        let text: Option<String> = sqlx::query_scalar(&format!(
            "SELECT string_agg(t::text, E'\\n') FROM \"{schema}\".\"{table}\" t"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        rows.push((format!("{schema}.{table}"), text.unwrap_or_default()));
    }
    rows
}

/// The tables holding any of `needles`.
async fn tables_holding(pool: &PgPool, needles: &[&str]) -> Vec<String> {
    every_row(pool)
        .await
        .into_iter()
        .filter(|(_, text)| needles.iter().any(|n| text.contains(n)))
        .map(|(table, _)| table)
        .collect()
}

async fn redis_document(key: &str) -> String {
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let fields: Vec<String> = redis::cmd("HGETALL")
        .arg(key)
        .query_async(&mut connection)
        .await
        .unwrap();
    fields.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_customer_is_nowhere_but_the_chain_and_anchors_still_verify() {
    let (_, master) = schemas::personal::MasterKey::generate().unwrap();
    let stack = Stack::start_with(Some(master)).await;
    let (status, session) = stack
        .post(
            "/api/auth/register",
            None,
            json!({"email": EMAIL, "password": "correct horse battery", "name": NAME}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let token = session["access_token"].as_str().unwrap().to_owned();
    let customer: Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(EMAIL)
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    let address = json!({"name": NAME, "line1": STREET, "city": "Bath",
                         "postal_code": "BA1 2QH", "country": "GB"});
    let order = stack
        .checkout_to(Some(&token), "KB-60", 1, "pm_card_visa", address)
        .await;
    let outcomes = stack.outcomes(&[order], Duration::from_secs(60)).await;
    assert_eq!(outcomes[&order], "CheckoutCompleted");

    // the read models, PostgreSQL and Redis, folded by a projector
    let mut projector = stack.shop();
    projector.arg("projector");
    let projector = super::support::ShopProcess::spawn(projector, 0);
    let started = Instant::now();
    loop {
        let in_pg: i64 =
            sqlx::query_scalar("SELECT count(*) FROM rm_orders.orders WHERE order_id = $1")
                .bind(order)
                .fetch_one(&stack.pool)
                .await
                .unwrap_or(0);
        let in_redis = redis_document(&format!("shop:v1:order:{order}")).await;
        if in_pg == 1 && in_redis.contains("Confirmed") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "projector lag");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(projector);

    // before erasure: the address is sealed in the log, redacted in every read model; only
    // the account (and the e-mails to it) hold the name
    assert_eq!(
        tables_holding(&stack.pool, &[STREET, "BA1 2QH"]).await,
        Vec::<String>::new()
    );
    // (the notifier's confirmation e-mail, "Hello <name>", is queued only when mail is set up)
    let holding_name = tables_holding(&stack.pool, &[NAME]).await;
    assert!(holding_name.contains(&"public.users".to_owned()));
    for table in &holding_name {
        assert!(
            ["public.users", "public.notification_outbox"].contains(&table.as_str()),
            "{table} holds the name"
        );
    }
    let order_document = redis_document(&format!("shop:v1:order:{order}")).await;
    assert!(!order_document.contains(STREET) && !order_document.contains(NAME));
    assert!(order_document.contains("[redacted]"), "{order_document}");

    // the customer's export has it all
    let export = stack
        .client
        .get(format!("{}/api/me/data", stack.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), StatusCode::OK);
    let export: Value = export.json().await.unwrap();
    assert_eq!(export["profile"]["email"], EMAIL);
    assert_eq!(export["addresses"][0]["name"], NAME);
    assert_eq!(export["addresses"][0]["line1"], STREET);
    assert_eq!(export["orders"][0]["order_id"], order.to_string());
    assert_eq!(
        export["orders"][0]["order"]["shipping_address"]["city"],
        "Bath"
    );
    assert_eq!(export["erased"], false);

    let anchors = tempfile::tempdir().unwrap();
    let anchored = stack
        .shop()
        .args(["audit", "anchor", "--out", anchors.path().to_str().unwrap()])
        .env("SHOP_AUDIT_ANCHOR_KEY", ANCHOR_KEY)
        .output()
        .unwrap();
    assert!(anchored.status.success(), "{anchored:?}");

    // staff erase the customer
    let staff = stack.staff_token().await;
    let (status, report) = stack
        .post(
            &format!("/api/customers/{customer}/erasure"),
            Some(&staff),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["key_destroyed"], true);
    assert_eq!(report["account_deleted"], true);
    assert_eq!(report["plaintext_events_kept"], 0);
    assert!(report["notifications_deleted"].is_u64());
    // again, through the CLI: idempotent
    let again = stack
        .shop()
        .args(["customer", "erase", &customer.to_string()])
        .output()
        .unwrap();
    assert!(again.status.success(), "{again:?}");
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["key_destroyed"], false);

    // the log is intact, the earlier anchor holds
    let verified = stack
        .shop()
        .args([
            "audit",
            "verify",
            "--anchors",
            anchors.path().to_str().unwrap(),
        ])
        .env("SHOP_AUDIT_ANCHOR_KEY", ANCHOR_KEY)
        .output()
        .unwrap();
    assert!(verified.status.success(), "{verified:?}");

    // rebuilt read models, every table and the order's Redis document: nothing of them
    let rebuilt = stack.shop().args(["rebuild", "--all"]).output().unwrap();
    assert!(rebuilt.status.success(), "{rebuilt:?}");
    assert_eq!(
        tables_holding(&stack.pool, &[NAME, STREET, EMAIL, "BA1 2QH"]).await,
        Vec::<String>::new()
    );
    let order_document = redis_document(&format!("shop:v1:order:{order}")).await;
    assert!(!order_document.contains(STREET) && !order_document.contains(NAME));

    // the export (staff's, the account is gone) shows the placeholder
    let export = stack
        .client
        .get(format!("{}/api/customers/{customer}/data", stack.base))
        .bearer_auth(&staff)
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), StatusCode::OK);
    let export: Value = export.json().await.unwrap();
    let text = export.to_string();
    for secret in [NAME, STREET, EMAIL, "BA1 2QH"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert_eq!(export["profile"], Value::Null);
    assert_eq!(export["erased"], true);
    assert_eq!(export["addresses"][0]["name"], "[erased]");
    assert_eq!(
        export["orders"][0]["order"]["shipping_address"]["country"],
        "GB"
    );

    // a wrong master key, or none, is refused by name
    let (_, wrong) = schemas::personal::MasterKey::generate().unwrap();
    let refused = super::shop_with(&stack.url, Some(wrong.as_str()))
        .args(["customer", "export", &customer.to_string()])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("SHOP_DATA_KEY_MASTER") && stderr.contains("not the one"),
        "{stderr}"
    );
    assert!(!stderr.contains(&wrong), "the key is never printed");
    let unkeyed = super::shop(&stack.url)
        .args(["customer", "erase", &customer.to_string()])
        .output()
        .unwrap();
    assert!(!unkeyed.status.success());
    assert!(String::from_utf8_lossy(&unkeyed.stderr).contains("needs SHOP_DATA_KEY_MASTER"));

    stack.stop().await;
}
