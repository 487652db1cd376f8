//! End to end through the `shop` binary: migrate, seed, audit verify and anchors (and their tamper
//! detection), config validation, and `serve` answering health checks and stopping on SIGTERM.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../support/mod.rs"]
mod support;

use support::{server_url, E2eDatabase, ShopProcess, SHOP};

fn shop(args: &[&str], database_url: &str) -> Output {
    Command::new(SHOP)
        .args(args)
        .env("DATABASE_URL", database_url)
        .env_remove("RUST_LOG")
        .output()
        .expect("run shop")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn migrate_seed_and_verify_are_idempotent_and_verify_catches_tampering() {
    let database = E2eDatabase::new();
    let url = database.url.clone();

    let first = shop(&["migrate"], &url);
    assert!(first.status.success(), "{first:?}");
    assert!(stdout(&first).contains("created database"));
    let second = shop(&["migrate"], &url);
    assert!(second.status.success());
    assert!(stdout(&second).contains("0 applied"), "{}", stdout(&second));

    let seeded = shop(&["seed"], &url);
    assert!(seeded.status.success(), "{seeded:?}");
    assert!(stdout(&seeded).contains("12 products created, 0 already there"));
    let reseeded = shop(&["seed"], &url);
    assert!(stdout(&reseeded).contains("0 products created, 12 already there"));

    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let stock: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'StockReceived'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        stock, 11,
        "stock received once per stocked product, not again on re-seed"
    );

    // every event written so far readable (open transactions anywhere on the cluster hold the
    // log's horizon back for a moment)
    for _ in 0..250 {
        let settled: bool = sqlx::query_scalar(
            "SELECT coalesce(max(transaction_id) < pg_snapshot_xmin(pg_current_snapshot()), true) FROM events",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if settled {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let rebuilt = shop(&["rebuild", "--all"], &url);
    assert!(rebuilt.status.success(), "{rebuilt:?}");
    let report = stdout(&rebuilt);
    for name in ["catalog", "stock", "orders", "reviews"] {
        assert!(report.contains(&format!("rebuilt {name}: ")), "{report}");
    }
    assert!(report.contains("events/s"), "{report}");
    let products: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_catalog.products")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(products, 12);
    let status = stdout(&shop(&["projections", "status"], &url));
    assert_eq!(status.matches(" live").count(), 4, "{status}");
    assert!(!shop(&["rebuild", "nothing"], &url).status.success());

    let intact = shop(&["audit", "verify"], &url);
    assert!(intact.status.success(), "{intact:?}");
    assert!(stdout(&intact).contains("every hash chain is intact"));
    assert!(stdout(&intact).contains("events/s"));

    let mut tx = pool.begin().await.unwrap();
    sqlx::query("ALTER TABLE events DISABLE TRIGGER events_immutable")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE events SET payload = jsonb_set(payload, '{StockReceived,quantity}', '4000')
          WHERE aggregate_type = 'inventory' AND aggregate_id = 'MUG-01' AND sequence = 1",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let broken = shop(&["audit", "verify"], &url);
    assert_eq!(broken.status.code(), Some(1));
    let report = stdout(&broken);
    assert!(
        report.contains("inventory/MUG-01 event #1: content was altered"),
        "{report}"
    );
    pool.close().await;
}

const ANCHOR_KEY: &str = "the anchor key of the cli tests, 32+ bytes";

fn shop_with(args: &[&str], database_url: &str, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(SHOP);
    command
        .args(args)
        .env("DATABASE_URL", database_url)
        .env_remove("RUST_LOG")
        .env_remove("SHOP_AUDIT_ANCHOR_DIR")
        .env_remove("SHOP_KAFKA_BROKERS");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run shop")
}

/// `shop audit anchor` signs every stream head into a file; `shop audit verify
/// --anchors` then catches the truncated tail the hash chain alone passes, and no new anchor is
/// written over it.
#[tokio::test]
async fn anchors_catch_a_truncated_stream_that_the_chain_misses() {
    let database = E2eDatabase::new();
    let (name, url) = (database.name.clone(), database.url.clone());
    assert!(shop(&["migrate"], &url).status.success());
    let seeded = shop(&["seed", "--products", "5", "--orders", "5"], &url);
    assert!(seeded.status.success(), "{seeded:?}");
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    // every seeded event readable (open transactions anywhere on the cluster hold the log's
    // horizon back for a moment)
    let (events, streams): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT (aggregate_type, aggregate_id)) FROM events",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    for _ in 0..250 {
        let settled: bool = sqlx::query_scalar(
            "SELECT max(transaction_id) < pg_snapshot_xmin(pg_current_snapshot()) FROM events",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dir = std::env::temp_dir().join(format!("shop-cli-anchors-{name}"));
    let dir_arg = dir.to_str().unwrap();
    let key = [("SHOP_AUDIT_ANCHOR_KEY", ANCHOR_KEY)];

    let missing_key = shop_with(&["audit", "anchor", "--out", dir_arg], &url, &[]);
    assert_eq!(missing_key.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing_key.stderr).contains("SHOP_AUDIT_ANCHOR_KEY"));
    let short_key = shop_with(
        &["audit", "anchor", "--out", dir_arg],
        &url,
        &[("SHOP_AUDIT_ANCHOR_KEY", "too-short-secret")],
    );
    assert_eq!(short_key.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&short_key.stderr);
    assert!(stderr.contains("at least 32 bytes"), "{stderr}");
    assert!(
        !stderr.contains("too-short-secret"),
        "the key is never printed: {stderr}"
    );
    let anchored = shop_with(&["audit", "anchor", "--out", dir_arg], &url, &key);
    assert!(anchored.status.success(), "{anchored:?}");
    let printed = stdout(&anchored);
    assert!(
        printed.contains(&format!("anchored {streams} streams, {events} events")),
        "{printed}"
    );
    assert!(printed.contains("events/s"), "{printed}");
    assert!(
        !printed.contains(ANCHOR_KEY)
            && !String::from_utf8_lossy(&anchored.stderr).contains(ANCHOR_KEY)
    );
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert_eq!(file["heads"].as_array().unwrap().len() as i64, streams);

    let verified = shop_with(&["audit", "verify", "--anchors", dir_arg], &url, &key);
    assert!(verified.status.success(), "{verified:?}");
    let printed = stdout(&verified);
    assert!(printed.contains("every hash chain is intact"), "{printed}");
    assert!(
        printed.contains(&format!("checked {streams} anchored heads")),
        "{printed}"
    );
    assert!(printed.contains("heads/s"), "{printed}");
    assert!(
        printed.contains("every anchored stream head is intact"),
        "{printed}"
    );
    let other_key = shop_with(
        &["audit", "verify", "--anchors", dir_arg],
        &url,
        &[(
            "SHOP_AUDIT_ANCHOR_KEY",
            "another key of 32 bytes or more, not ours",
        )],
    );
    assert_eq!(other_key.status.code(), Some(1));
    assert!(
        stdout(&other_key).contains("badly signed"),
        "{}",
        stdout(&other_key)
    );

    // the longest stream loses its last event: a shorter chain that still verifies
    let (aggregate_type, aggregate_id, last): (String, String, i64) = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, sequence FROM events
          ORDER BY sequence DESC, aggregate_type, aggregate_id LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(last > 1, "a stream of more than one event");
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "DELETE FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3",
    )
    .bind(&aggregate_type)
    .bind(&aggregate_id)
    .bind(last)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(shop(&["audit", "verify"], &url).status.success());

    let broken = shop_with(&["audit", "verify", "--anchors", dir_arg], &url, &key);
    assert_eq!(broken.status.code(), Some(1));
    let printed = stdout(&broken);
    assert!(printed.contains("every hash chain is intact"), "{printed}");
    assert!(
        printed.contains(&format!(
            "{aggregate_type}/{aggregate_id} was truncated: anchored through event #{last}, now ends at #{}",
            last - 1
        )),
        "{printed}"
    );
    let refused = shop_with(&["audit", "anchor", "--out", dir_arg], &url, &key);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stdout(&refused).contains("no new anchor written"),
        "{}",
        stdout(&refused)
    );
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    std::fs::remove_dir_all(&dir).unwrap();
    pool.close().await;
}

/// `shop serve` with SHOP_AUDIT_ANCHOR_DIR writes signed anchors on its own (and refuses to start
/// without the key).
#[tokio::test]
async fn serve_writes_signed_anchors_on_a_schedule() {
    let database = E2eDatabase::new();
    let (name, url) = (database.name.clone(), database.url.clone());
    assert!(shop(&["migrate"], &url).status.success());
    assert!(shop(&["seed"], &url).status.success());
    let dir = std::env::temp_dir().join(format!("shop-serve-anchors-{name}"));
    let dir_arg = dir.to_str().unwrap();
    let keyless = shop_with(
        &[
            "serve",
            "--command-api-addr",
            "127.0.0.1:0",
            "--query-api-addr",
            "127.0.0.1:0",
        ],
        &url,
        &[
            ("SHOP_AUDIT_ANCHOR_DIR", dir_arg),
            ("SHOP_PAYMENT_GATEWAY", "local"),
        ],
    );
    assert_eq!(keyless.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&keyless.stderr).contains("SHOP_AUDIT_ANCHOR_KEY"));

    let child = ShopProcess::role(
        "serve",
        &url,
        &[
            ("SHOP_AUDIT_ANCHOR_DIR", dir_arg),
            ("SHOP_AUDIT_ANCHOR_KEY", ANCHOR_KEY),
            ("SHOP_AUDIT_ANCHOR_EVERY_SECONDS", "1"),
        ],
        2,
    );
    assert!(
        child
            .printed
            .contains(&format!("writing audit anchors to {dir_arg} every 1 s")),
        "{:?}",
        child.printed
    );
    let mut written = 0;
    for _ in 0..300 {
        written = std::fs::read_dir(&dir).map_or(0, |files| files.count());
        if written > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(written > 0, "no anchor written within 30 s");
    drop(child);
    let verified = shop_with(
        &["audit", "verify", "--anchors", dir_arg],
        &url,
        &[("SHOP_AUDIT_ANCHOR_KEY", ANCHOR_KEY)],
    );
    assert!(verified.status.success(), "{verified:?}");
    assert!(stdout(&verified).contains("every anchored stream head is intact"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// With SHOP_KAFKA_BROKERS, `shop audit anchor` also publishes the anchor's signed header (the
/// file's digest and signature, without the heads) to `shop.audit-anchors.v1`.
#[tokio::test]
async fn audit_anchor_publishes_its_signed_header_to_kafka() {
    let database = E2eDatabase::new();
    let (name, url) = (database.name.clone(), database.url.clone());
    assert!(shop(&["migrate"], &url).status.success());
    assert!(shop(&["seed"], &url).status.success());
    let admin = sqlx::PgPool::connect(&server_url()).await.unwrap();
    let broker = relay::testing::Broker::start_beside(&admin, &name).await;
    let brokers = broker.brokers();
    let dir = std::env::temp_dir().join(format!("shop-cli-anchors-{name}"));
    let anchored = shop_with(
        &["audit", "anchor", "--out", dir.to_str().unwrap()],
        &url,
        &[
            ("SHOP_AUDIT_ANCHOR_KEY", ANCHOR_KEY),
            ("SHOP_KAFKA_BROKERS", &brokers),
        ],
    );
    assert!(anchored.status.success(), "{anchored:?}");
    assert!(stdout(&anchored).contains("published to Kafka topic shop.audit-anchors.v1"));
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    // the signed header on Kafka carries the file's digest and signature
    {
        use rdkafka::consumer::{Consumer, StreamConsumer};
        use rdkafka::Message;
        let consumer: StreamConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", format!("anchors-{name}"))
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&["shop.audit-anchors.v1"]).unwrap();
        let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .expect("the anchor arrives on Kafka")
            .unwrap();
        let header: serde_json::Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        assert_eq!(header["digest"], file["digest"]);
        assert_eq!(header["signature"], file["signature"]);
        assert_eq!(header["heads"], serde_json::json!([]));
    }

    drop(broker);
    std::fs::remove_dir_all(&dir).unwrap();
    sqlx::query(&format!(
        "DROP DATABASE IF EXISTS {name}_kafka WITH (FORCE)"
    ))
    .execute(&admin)
    .await
    .unwrap();
}

#[test]
fn invalid_configuration_is_refused_with_a_clear_message() {
    let output = Command::new(SHOP)
        .args(["migrate", "--database-url", "mysql://db/shop"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("--database-url"), "{message}");
    assert!(message.contains("not PostgreSQL"), "{message}");

    let output = Command::new(SHOP)
        .args(["serve", "--command-api-addr", "nowhere"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// The roles that take payments refuse to start until the gateway is chosen: without
/// SHOP_PAYMENT_GATEWAY a production process would silently take no real payments.
#[tokio::test]
async fn the_payment_roles_refuse_to_start_without_an_explicit_gateway() {
    let database = E2eDatabase::new();
    let url = database.url.clone();
    assert!(shop(&["migrate"], &url).status.success());
    let start = |role: &str, env: &[(&str, &str)]| -> (Option<i32>, String) {
        let mut command = support::shop(&url);
        command
            .args([role, "--command-api-addr", "127.0.0.1:0"])
            .args(["--query-api-addr", "127.0.0.1:0"])
            .env_remove("SHOP_PAYMENT_GATEWAY")
            .env_remove("SHOP_STRIPE_SECRET_KEY")
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = ShopProcess::spawn(command, 0);
        // a refused configuration exits at once; a process that started keeps running
        match child.exit_within_blocking(Duration::from_secs(5)) {
            Some(status) => (status.code(), child.stderr()),
            None => (None, format!("`shop {role}` was still running after 5 s")),
        }
    };
    for role in ["serve", "saga-runner"] {
        let (code, stderr) = start(role, &[]);
        assert_eq!(code, Some(1), "{role}: {stderr}");
        assert!(stderr.contains("SHOP_PAYMENT_GATEWAY"), "{role}: {stderr}");
        assert!(
            stderr.contains("local") && stderr.contains("stripe"),
            "{stderr}"
        );
    }
    let (code, stderr) = start("saga-runner", &[("SHOP_PAYMENT_GATEWAY", "stripe")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("SHOP_STRIPE_SECRET_KEY"), "{stderr}");
    let (code, stderr) = start("serve", &[("SHOP_PAYMENT_GATEWAY", "paypal")]);
    assert_eq!(code, Some(2), "{stderr}");
    // an explicit choice starts
    let (code, stderr) = start("serve", &[("SHOP_PAYMENT_GATEWAY", "local")]);
    assert_eq!(code, None, "{stderr}");
}

async fn http_get(addr: &str, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn serve_prints_where_it_listens_answers_health_and_stops_on_sigterm() {
    let database = E2eDatabase::new();
    let url = database.url.clone();
    assert!(shop(&["migrate"], &url).status.success());
    let mut child = ShopProcess::role("serve", &url, &[], 2);
    let addresses = [child.addr("command API"), child.addr("query API")];
    assert!(
        child.printed.iter().any(|l| l == "checkout saga running"),
        "{:?}",
        child.printed
    );
    for addr in &addresses {
        assert!(http_get(addr, "/health/live")
            .await
            .starts_with("HTTP/1.1 200"));
        assert!(http_get(addr, "/health/ready")
            .await
            .starts_with("HTTP/1.1 200"));
    }

    // the read side's lag is exported as Prometheus gauges
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = http_get(&addresses[1], "/metrics").await;
        if metrics.contains("shop_projection_lag_events{projection=\"orders\"}")
            && metrics.contains("shop_log_held_back_events")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("shop_projection_lag_seconds{projection=\"catalog\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("shop_log_held_back_events"), "{metrics}");

    let status = child
        .terminate(Duration::from_secs(5))
        .await
        .expect("shop serve stopped within 5 s of SIGTERM");
    assert!(status.success(), "{status:?}");
}

/// The storefront's round trip through one `shop serve`: sign up and fill a cart over REST, read
/// it back over GraphQL with the command's position (read-your-writes), search the seeded
/// catalog, check out, and watch the order reach `CONFIRMED` on the read side.
#[tokio::test]
async fn a_storefront_round_trip_through_both_apis() {
    let database = E2eDatabase::new();
    let url = database.url.clone();
    assert!(shop(&["migrate"], &url).status.success());
    assert!(shop(&["seed"], &url).status.success());
    let child = ShopProcess::role("serve", &url, &[], 2);
    let (command_api, query_api) = (child.url("command API"), child.url("query API"));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let post = |path: String, token: Option<String>, body: serde_json::Value| {
        let client = client.clone();
        async move {
            let mut request = client.post(path).json(&body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let graphql = |token: String, query: &'static str, variables: serde_json::Value| {
        post(
            format!("{query_api}/graphql"),
            Some(token),
            serde_json::json!({"query": query, "variables": variables}),
        )
    };

    let (status, session) = post(
        format!("{command_api}/api/auth/register"),
        None,
        serde_json::json!({"email": "ada@example.com", "password": "a long password", "name": "Ada"}),
    )
    .await;
    assert_eq!(status, 201, "{session}");
    let token = session["access_token"].as_str().unwrap().to_owned();
    let (_, cart) = post(
        format!("{command_api}/api/carts"),
        Some(token.clone()),
        serde_json::json!({}),
    )
    .await;
    let cart_id = cart["cart_id"].as_str().unwrap().to_owned();
    let (status, added) = post(
        format!("{command_api}/api/carts/{cart_id}/items"),
        Some(token.clone()),
        serde_json::json!({"sku": "HP-100", "quantity": 2}),
    )
    .await;
    assert_eq!(status, 200, "{added}");

    // the token of the command API works on the query API; the position makes the read current
    let (status, read) = graphql(
        token.clone(),
        "query($id: UUID!, $p: String) { cart(id: $id, position: $p) { itemCount lines { sku } } }",
        serde_json::json!({"id": cart_id, "p": added["position"]}),
    )
    .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["data"]["cart"]["itemCount"], 2, "{read}");

    // the replica's own search index was built from the log
    let mut found = serde_json::Value::Null;
    for _ in 0..100 {
        let (_, response) = graphql(
            token.clone(),
            "{ products(query: \"hedphones\") { totalCount edges { node { sku } } } }",
            serde_json::json!({}),
        )
        .await;
        found = response;
        if found["data"]["products"]["totalCount"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(found["data"]["products"]["totalCount"], 2, "{found}");

    let address = serde_json::json!({"name": "Ada", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"});
    // the caller's correlation id travels into every event the saga writes for this checkout
    let correlation = uuid::Uuid::new_v4().to_string();
    let response = client
        .post(format!("{command_api}/api/carts/{cart_id}/checkout"))
        .bearer_auth(&token)
        .header("X-Correlation-Id", &correlation)
        .json(&serde_json::json!({"shipping_address": address, "payment_method": "pm_card_visa"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let checkout: serde_json::Value = response.json().await.unwrap();
    let order_id = checkout["order_id"].as_str().unwrap().to_owned();
    let mut order = serde_json::Value::Null;
    for _ in 0..200 {
        let (_, response) = graphql(
            token.clone(),
            "query($id: UUID!) { order(id: $id) { status totals { total { amountMinor } } timeline { status } } me { orders { totalCount } } }",
            serde_json::json!({"id": order_id}),
        )
        .await;
        order = response;
        if order["data"]["order"]["status"] == "CONFIRMED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(order["data"]["order"]["status"], "CONFIRMED", "{order}");
    assert_eq!(order["data"]["me"]["orders"]["totalCount"], 1, "{order}");
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let by_saga: Vec<(String, String)> = sqlx::query_as(
        "SELECT aggregate_type, event_type FROM events
          WHERE metadata->>'correlation_id' = $1 AND metadata->>'actor_role' = 'system'",
    )
    .bind(&correlation)
    .fetch_all(&pool)
    .await
    .unwrap();
    for (aggregate, event) in [
        ("order", "OrderPlaced"),
        ("inventory", "StockReserved"),
        ("payment", "PaymentAuthorized"),
        ("order", "OrderConfirmed"),
    ] {
        assert!(
            by_saga.iter().any(|(a, e)| a == aggregate && e == event),
            "the saga's {event} does not carry the request's correlation id: {by_saga:?}"
        );
    }
    pool.close().await;
    drop(child);
}

/// SIGTERM under load: `shop serve` stops taking requests, finishes the ones in flight, and
/// exits 0 in time. Every request either got its whole answer or could not connect; every
/// accepted command's event is in the log; no idempotency key is left "in progress"; and every
/// accepted checkout completes after a restart.
#[tokio::test]
async fn sigterm_under_load_leaves_nothing_half_done() {
    let database = E2eDatabase::new();
    let url = database.url.clone();
    assert!(shop(&["migrate"], &url).status.success());
    assert!(shop(&["seed"], &url).status.success());
    let start = || {
        let child = ShopProcess::role(
            "serve",
            &url,
            &[
                ("SHOP_JWT_SECRET", "shutdown-test-secret-0123456789abcdef"),
                ("SHOP_CHECKOUT_RATE_PER_MINUTE", "1000000"),
                ("SHOP_AUTH_RATE_PER_MINUTE", "1000000"),
                ("SHOP_SHUTDOWN_GRACE_SECONDS", "10"),
            ],
            1,
        );
        let base = child.url("command API");
        (child, base)
    };
    let (mut child, base) = start();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let session: serde_json::Value = client
        .post(format!("{base}/api/auth/register"))
        .json(&serde_json::json!({"email": "load@example.com", "password": "a long password", "name": "Load"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["access_token"].as_str().unwrap().to_owned();

    // 8 clients: each a cart, items added with idempotency keys, then a checkout, in a loop
    let stopping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (client, base, token, stopping) = (
            client.clone(),
            base.clone(),
            token.clone(),
            stopping.clone(),
        );
        clients.spawn(async move {
            let mut positions = Vec::new();
            let mut orders = Vec::new();
            let mut other_errors = Vec::new();
            let mut round = 0;
            loop {
                round += 1;
                let outcome: Result<(), reqwest::Error> = async {
                    let cart: serde_json::Value = client
                        .post(format!("{base}/api/carts"))
                        .bearer_auth(&token)
                        .json(&serde_json::json!({}))
                        .send()
                        .await?
                        .json()
                        .await?;
                    let Some(cart) = cart["cart_id"].as_str().map(str::to_owned) else {
                        return Ok(());
                    };
                    for item in 0..3 {
                        let response = client
                            .post(format!("{base}/api/carts/{cart}/items"))
                            .bearer_auth(&token)
                            .header("Idempotency-Key", format!("w{worker}-r{round}-i{item}"))
                            .json(&serde_json::json!({"sku": "MUG-01", "quantity": 1}))
                            .send()
                            .await?;
                        if response.status().is_success() {
                            let body: serde_json::Value = response.json().await?;
                            positions.push(body["position"].as_str().unwrap().to_owned());
                        }
                    }
                    let address = serde_json::json!({"name": "Ada", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"});
                    let response = client
                        .post(format!("{base}/api/carts/{cart}/checkout"))
                        .bearer_auth(&token)
                        .json(&serde_json::json!({"shipping_address": address, "payment_method": "pm_card_visa"}))
                        .send()
                        .await?;
                    if response.status().as_u16() == 202 {
                        let body: serde_json::Value = response.json().await?;
                        orders.push(body["order_id"].as_str().unwrap().to_owned());
                    }
                    Ok(())
                }
                .await;
                match outcome {
                    Ok(()) => {}
                    // the listener is closed, or a keep-alive connection was closed before the
                    // request was read: what a stopping server may do (the state checks below
                    // show nothing was left half-done)
                    Err(error) if error.is_connect() || (error.is_request() && !error.is_timeout()) => break,
                    Err(error) => {
                        other_errors.push(error.to_string());
                        break;
                    }
                }
                if stopping.load(std::sync::atomic::Ordering::Relaxed) && round > 1_000 {
                    break;
                }
            }
            (positions, orders, other_errors)
        });
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    child.sigterm();
    stopping.store(true, std::sync::atomic::Ordering::Relaxed);
    let status = child
        .exit_within(Duration::from_secs(12))
        .await
        .expect("shop serve stopped within 12 s of SIGTERM");
    assert!(status.success(), "{status:?}");
    let (mut positions, mut orders, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(result) = clients.join_next().await {
        let (p, o, e) = result.unwrap();
        positions.extend(p);
        orders.extend(o);
        errors.extend(e);
    }
    // an answer cut off mid-body or a request left hanging is what must not happen
    assert!(
        errors.is_empty(),
        "answers cut off or requests hung: {errors:?}"
    );
    assert!(
        positions.len() > 10 && !orders.is_empty(),
        "load ran: {} items, {} orders",
        positions.len(),
        orders.len()
    );

    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    for position in &positions {
        let (_, global) = position.split_once('.').unwrap();
        let found: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE global_position = $1")
                .bind(global.parse::<i64>().unwrap())
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(
            found, 1,
            "an accepted command's event is missing at {position}"
        );
    }
    let in_progress: i64 =
        sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE status IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(in_progress, 0, "idempotency keys left in progress");

    // after a restart, every accepted checkout reaches its end
    let (restarted, _) = start();
    let mut settled = 0;
    for _ in 0..300 {
        settled = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM events WHERE aggregate_type = 'checkout' AND aggregate_id = ANY($1)
               AND event_type IN ('CheckoutCompleted', 'CheckoutFailed')",
        )
        .bind(&orders)
        .fetch_one(&pool)
        .await
        .unwrap();
        if settled as usize == orders.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(settled as usize, orders.len(), "checkouts left unfinished");
    drop(restarted);
    pool.close().await;
}

/// Scale-out mode: the relay publishes the log to a real Kafka-protocol broker, and the saga
/// runner and the projectors follow Kafka instead of PostgreSQL. A checkout still goes from
/// cart to `CONFIRMED` on the read side.
#[tokio::test]
async fn a_checkout_completes_with_the_saga_and_projectors_on_kafka() {
    let database = E2eDatabase::new();
    let (name, url) = (database.name.clone(), database.url.clone());
    assert!(shop(&["migrate"], &url).status.success());
    assert!(shop(&["seed"], &url).status.success());
    let admin = sqlx::PgPool::connect(&server_url()).await.unwrap();
    let broker = relay::testing::Broker::start_beside(&admin, &name).await;
    let brokers = broker.brokers();
    let child = ShopProcess::role(
        "serve",
        &url,
        &[
            ("SHOP_KAFKA_BROKERS", &brokers),
            ("SHOP_EVENT_SOURCE", "kafka"),
        ],
        2,
    );
    let printed = child.printed.clone();
    let (command_api, query_api) = (Some(child.url("command API")), Some(child.url("query API")));
    assert!(
        printed
            .iter()
            .any(|l| l.starts_with("checkout saga running on Kafka")),
        "{printed:?}"
    );
    assert!(
        printed.iter().any(|l| l.starts_with("relay publishing")),
        "{printed:?}"
    );
    let (command_api, query_api) = (command_api.unwrap(), query_api.unwrap());
    let client = reqwest::Client::new();
    let post = |url: String, token: Option<&str>, body: serde_json::Value| {
        let mut request = client.post(url).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response
                    .json::<serde_json::Value>()
                    .await
                    .unwrap_or_default(),
            )
        }
    };
    let (_, session) = post(
        format!("{command_api}/api/auth/register"),
        None,
        serde_json::json!({"email": "kafka@example.com", "password": "a long password", "name": "K"}),
    )
    .await;
    let token = session["access_token"].as_str().unwrap().to_owned();
    let (_, cart) = post(
        format!("{command_api}/api/carts"),
        Some(&token),
        serde_json::json!({}),
    )
    .await;
    let cart = cart["cart_id"].as_str().unwrap().to_owned();
    let (status, _) = post(
        format!("{command_api}/api/carts/{cart}/items"),
        Some(&token),
        serde_json::json!({"sku": "HP-100", "quantity": 1}),
    )
    .await;
    assert_eq!(status, 200);
    let address = serde_json::json!({"name": "Ada", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"});
    let (status, checkout) = post(
        format!("{command_api}/api/carts/{cart}/checkout"),
        Some(&token),
        serde_json::json!({"shipping_address": address, "payment_method": "pm_card_visa"}),
    )
    .await;
    assert_eq!(status, 202, "{checkout}");
    let order = checkout["order_id"].as_str().unwrap().to_owned();
    let mut seen = serde_json::Value::Null;
    for _ in 0..300 {
        let (_, response) = post(
            format!("{query_api}/graphql"),
            Some(&token),
            serde_json::json!({"query": "query($id: UUID!) { order(id: $id) { status } }", "variables": {"id": order}}),
        )
        .await;
        seen = response;
        if seen["data"]["order"]["status"] == "CONFIRMED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen["data"]["order"]["status"], "CONFIRMED", "{seen}");
    // the read model was fed from Kafka: its deduplication table saw the order's events
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let consumed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM consumed_events WHERE subscription = 'kafka:orders'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        consumed >= 3,
        "orders read model fed from Kafka: {consumed} events"
    );
    pool.close().await;
    drop(child);
    drop(broker);
    sqlx::query(&format!(
        "DROP DATABASE IF EXISTS {name}_kafka WITH (FORCE)"
    ))
    .execute(&admin)
    .await
    .unwrap();
}

/// A minimal OTLP/HTTP collector: answers 200 to every POST and keeps (path, content type,
/// body) of each.
async fn otlp_collector() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(String, String, Vec<u8>)>>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                loop {
                    // one request: headers, then Content-Length bytes
                    let mut chunk = [0u8; 65536];
                    let header_end = loop {
                        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            break end + 4;
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
                    let header = |name: &str| {
                        head.lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                            })
                            .unwrap_or_default()
                    };
                    let length: usize = header("content-length").parse().unwrap_or(0);
                    while buffer.len() < header_end + length {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let path = head
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_owned();
                    let body = buffer[header_end..header_end + length].to_vec();
                    store
                        .lock()
                        .unwrap()
                        .push((path, header("content-type"), body));
                    buffer.drain(..header_end + length);
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });
    (url, received)
}

/// With an OTLP endpoint configured, a request's span reaches the collector (flushed at
/// shutdown), as protobuf over HTTP, named for the service.
#[tokio::test]
async fn spans_are_exported_over_otlp_when_an_endpoint_is_set() {
    let (collector, received) = otlp_collector().await;
    let database = E2eDatabase::new();
    let url = database.url.clone();
    assert!(shop(&["migrate"], &url).status.success());
    let mut child = ShopProcess::role(
        "serve",
        &url,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector),
            ("RUST_LOG", "info"),
        ],
        1,
    );
    let base = child.url("command API");
    let response = reqwest::Client::new()
        .post(format!("{base}/api/carts"))
        .header("X-Request-Id", "otlp-test-request")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let _ = child.terminate(Duration::from_secs(10)).await;
    let received = received.lock().unwrap().clone();
    let traces: Vec<&(String, String, Vec<u8>)> = received
        .iter()
        .filter(|(path, _, _)| path == "/v1/traces")
        .collect();
    assert!(
        !traces.is_empty(),
        "no OTLP export arrived: {:?}",
        received.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    assert!(traces
        .iter()
        .all(|(_, content_type, _)| content_type == "application/x-protobuf"));
    let contains = |needle: &[u8]| {
        traces
            .iter()
            .any(|(_, _, body)| body.windows(needle.len()).any(|w| w == needle))
    };
    // protobuf keeps strings as bytes: the span name, its request id, the service name
    assert!(contains(b"request"), "no request span exported");
    assert!(
        contains(b"otlp-test-request"),
        "the span lacks its request id"
    );
    assert!(contains(b"shop"), "no service name");
}

/// Readiness follows the read side: a query API whose read models lag more than
/// `SHOP_READY_MAX_LAG_SECONDS` answers 503 naming them, and 200 once they caught up.
#[tokio::test]
async fn readiness_fails_while_read_models_lag_and_recovers() {
    let database = E2eDatabase::new();
    let url = database.url.clone();
    assert!(shop(&["migrate"], &url).status.success());
    assert!(shop(&["seed"], &url).status.success());
    // the query API alone: nothing projects the seeded events
    let child = ShopProcess::role("query-api", &url, &[("SHOP_READY_MAX_LAG_SECONDS", "1")], 1);
    let addr = child.addr("query API");
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let lagging = http_get(&addr, "/health/ready").await;
    assert!(lagging.starts_with("HTTP/1.1 503"), "{lagging}");
    assert!(
        lagging.contains("read models lagging") && lagging.contains("catalog"),
        "{lagging}"
    );
    // catch the read models up: ready again
    let rebuilt = shop(&["rebuild", "--all"], &url);
    assert!(rebuilt.status.success(), "{rebuilt:?}");
    let mut ready = String::new();
    for _ in 0..50 {
        ready = http_get(&addr, "/health/ready").await;
        if ready.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    drop(child);
}

/// `shop seed --products N --orders M` generates realistic volumes that the read models and the
/// audit accept: M orders, N more products, no stock below zero, every chain intact.
#[tokio::test]
async fn seed_generates_volumes_the_read_side_and_the_audit_accept() {
    let database = E2eDatabase::new();
    let url = database.url.clone();
    assert!(shop(&["migrate"], &url).status.success());
    let seeded = shop(&["seed", "--products", "50", "--orders", "120"], &url);
    assert!(seeded.status.success(), "{seeded:?}");
    assert!(
        stdout(&seeded).contains("generated 120 orders"),
        "{}",
        stdout(&seeded)
    );
    assert!(shop(&["rebuild", "--all"], &url).status.success());
    let verified = shop(&["audit", "verify"], &url);
    assert!(verified.status.success(), "{}", stdout(&verified));
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let orders: i64 =
        sqlx::query_scalar("SELECT count(*) FROM rm_orders.orders WHERE status = 'confirmed'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(orders, 120);
    let products: i64 = sqlx::query_scalar("SELECT count(*) FROM rm_catalog.products")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(products, 12 + 50);
    let negative: i64 =
        sqlx::query_scalar("SELECT count(*) FROM rm_catalog.stock WHERE available < 0")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(negative, 0);
    pool.close().await;
}

#[tokio::test]
async fn staff_list_and_resume_parked_saga_work() {
    let database = E2eDatabase::new();
    let url = database.url.clone();
    assert!(shop(&["migrate"], &url).status.success());
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO parked_timers (kind, key, attempts, reason)
         VALUES ('checkout', 'order-7', 240, 'payment provider unavailable: timed out')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let listed = shop(&["saga", "parked"], &url);
    assert!(listed.status.success());
    let text = stdout(&listed);
    assert!(text.contains("checkout\torder-7"), "{text}");
    assert!(text.contains("after 240 attempts"), "{text}");
    assert!(text.contains("1 parked"), "{text}");

    let resumed = shop(&["saga", "resume", "checkout", "order-7"], &url);
    assert!(resumed.status.success(), "{}", stdout(&resumed));
    let due: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM timers WHERE kind = 'checkout' AND key = 'order-7' AND due_at <= now()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(due, 1, "back on the schedule, due now");
    assert!(stdout(&shop(&["saga", "parked"], &url)).contains("0 parked"));
    // nothing parked under that name any more
    assert!(!shop(&["saga", "resume", "checkout", "order-7"], &url)
        .status
        .success());
    pool.close().await;
}
