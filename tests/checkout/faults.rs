//! Checkouts under faults: two `shop serve` processes (so no in-process lock helps) on a
//! PostgreSQL and a Redis of the test's own, under checkout load from several customers, while
//! one process is SIGKILLed and started again, PostgreSQL is restarted and Redis is restarted
//! (losing its data). Afterwards every accepted checkout settled exactly once, nothing was sold
//! beyond stock, no payment was captured twice, the hash chains verify and every PostgreSQL read
//! model equals a rebuild from the log. Prints what the clients saw (accepted, errors by status)
//! and how long checkouts took to succeed again after the database restart.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use super::support::{self, ShopProcess};
use super::JWT_SECRET;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A command that runs as the `postgres` user when we are root (PostgreSQL refuses root).
fn as_postgres(program: PathBuf) -> Command {
    // SAFETY-free check of the effective user: `id -u` prints it
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// The newest installed PostgreSQL's program `name` (Debian's layout).
fn pg_program(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's programs under /usr/lib/postgresql")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    versions.sort_by_key(|path| {
        path.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .last()
        .expect("a PostgreSQL version")
        .join("bin")
        .join(name)
}

/// A PostgreSQL server of this test's own, in a temporary directory.
struct OwnPostgres {
    dir: PathBuf,
    port: u16,
}

impl OwnPostgres {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("shop-faults-pg-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status();
        let init = as_postgres(pg_program("initdb"))
            .arg("-D")
            .arg(&dir)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(init.status.success(), "initdb: {init:?}");
        let server = Self {
            dir,
            port: free_port(),
        };
        server.pg_ctl("start");
        server
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn pg_ctl(&self, action: &str) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k /tmp -c fsync=off -c max_connections=200",
            self.port
        );
        let mut command = as_postgres(pg_program("pg_ctl"));
        command
            .arg("-D")
            .arg(&self.dir)
            .args(["-w", "-m", "fast", "-o", &options, "-l"])
            .arg(self.dir.join("server.log"))
            .arg(action)
            .stdout(Stdio::null());
        let done = command.output().unwrap();
        assert!(done.status.success(), "pg_ctl {action}: {done:?}");
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = as_postgres(pg_program("pg_ctl"))
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis server of this test's own (no persistence: a restart loses everything).
struct OwnRedis {
    port: u16,
    process: Option<Child>,
}

impl OwnRedis {
    fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            process: None,
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let process = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.process = Some(process);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start");
    }

    fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn shop(database_url: &str, redis_url: &str) -> Command {
    let mut command = support::shop(database_url);
    command
        .env("REDIS_URL", redis_url)
        .env("SHOP_JWT_SECRET", JWT_SECRET)
        .env("SHOP_PAYMENT_GATEWAY", "local")
        .env("SHOP_CHECKOUT_RATE_PER_MINUTE", "1000000")
        .env("SHOP_AUTH_RATE_PER_MINUTE", "1000000")
        .env("SHOP_DB_MAX_CONNECTIONS", "16")
        .env("RUST_LOG", "error");
    command
}

/// A `shop serve` process (killed on drop) and its APIs' base URLs.
struct Serving {
    process: ShopProcess,
    command_api: String,
    query_api: String,
}

impl Serving {
    fn start(database_url: &str, redis_url: &str) -> Self {
        let mut command = shop(database_url, redis_url);
        command
            .args(["serve", "--command-api-addr", "127.0.0.1:0"])
            .args(["--query-api-addr", "127.0.0.1:0"])
            .stderr(Stdio::null());
        let process = ShopProcess::spawn(command, 2);
        Self {
            command_api: process.url("command API"),
            query_api: process.url("query API"),
            process,
        }
    }

    /// SIGKILL.
    fn kill(&mut self) {
        self.process.kill();
    }
}

/// What the shoppers saw.
#[derive(Default)]
struct Seen {
    accepted: Vec<Uuid>,
    /// Failed requests by status (`connect` when nothing answered).
    errors: BTreeMap<String, u64>,
    /// When each accepted checkout was answered.
    accepted_at: Vec<Instant>,
}

async fn post(
    client: &reqwest::Client,
    url: String,
    token: &str,
    body: Value,
) -> Result<(StatusCode, Value), String> {
    let response = client
        .post(url)
        .bearer_auth(token)
        .header("Idempotency-Key", Uuid::new_v4().to_string())
        .json(&body)
        .send()
        .await
        .map_err(|_| "connect".to_owned())?;
    let status = response.status();
    if status == StatusCode::SERVICE_UNAVAILABLE
        && !response
            .headers()
            .contains_key(reqwest::header::RETRY_AFTER)
    {
        return Err("503 without Retry-After".to_owned());
    }
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// A catalog read over GraphQL (it reads PostgreSQL); failures counted by `extensions.code`.
async fn read_product(client: &reqwest::Client, base: &str, seen: &Mutex<Seen>) {
    let query = json!({"query": "{ product(sku: \"HP-100\") { name available } }"});
    let outcome = match client
        .post(format!("{base}/graphql"))
        .json(&query)
        .send()
        .await
    {
        Err(_) => Some("graphql connect".to_owned()),
        Ok(response) if !response.status().is_success() => {
            Some(format!("graphql http {}", response.status().as_u16()))
        }
        Ok(response) => {
            let body: Value = response.json().await.unwrap_or(Value::Null);
            body["errors"][0]["extensions"]["code"]
                .as_str()
                .map(|code| format!("graphql {code}"))
        }
    };
    if let Some(what) = outcome {
        *seen.lock().unwrap().errors.entry(what).or_default() += 1;
    }
}

/// One shopper: carts of one unit of a scarce product, checked out, until `until`.
async fn shopper(
    client: reqwest::Client,
    bases: Arc<RwLock<Vec<(String, String)>>>,
    token: String,
    seen: Arc<Mutex<Seen>>,
    until: Instant,
    n: usize,
) {
    let skus = ["SPK-10", "HP-200", "HP-100"];
    let address = json!({"name": "Ada", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"});
    let mut round = n;
    while Instant::now() < until {
        round += 1;
        let (base, query_base) = {
            let bases = bases.read().unwrap();
            bases[round % bases.len()].clone()
        };
        read_product(&client, &query_base, &seen).await;
        let error = |seen: &Arc<Mutex<Seen>>, what: String| {
            *seen.lock().unwrap().errors.entry(what).or_default() += 1;
        };
        let cart = match post(&client, format!("{base}/api/carts"), &token, json!({})).await {
            Ok((StatusCode::CREATED, body)) => body["cart_id"].as_str().unwrap().to_owned(),
            Ok((status, _)) => {
                error(&seen, status.as_u16().to_string());
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(what) => {
                error(&seen, what);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let sku = skus[round % skus.len()];
        let item = json!({"sku": sku, "quantity": 1});
        match post(
            &client,
            format!("{base}/api/carts/{cart}/items"),
            &token,
            item,
        )
        .await
        {
            Ok((StatusCode::OK, _)) => {}
            Ok((status, _)) => {
                error(&seen, status.as_u16().to_string());
                continue;
            }
            Err(what) => {
                error(&seen, what);
                continue;
            }
        }
        let body = json!({"shipping_address": address, "payment_method": "pm_card_visa"});
        match post(
            &client,
            format!("{base}/api/carts/{cart}/checkout"),
            &token,
            body,
        )
        .await
        {
            Ok((StatusCode::ACCEPTED, body)) => {
                let order = body["order_id"].as_str().unwrap().parse().unwrap();
                let mut seen = seen.lock().unwrap();
                seen.accepted.push(order);
                seen.accepted_at.push(Instant::now());
            }
            Ok((status, _)) => error(&seen, status.as_u16().to_string()),
            Err(what) => error(&seen, what),
        }
    }
}

/// A checksum of every PostgreSQL read-model table (rows in a canonical order).
async fn read_model_checksums(pool: &PgPool) -> BTreeMap<String, String> {
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT schemaname::text, tablename::text FROM pg_tables
          WHERE schemaname LIKE 'rm\\_%' AND schemaname NOT LIKE '%\\_\\_%'
          ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut sums = BTreeMap::new();
    for (schema, table) in tables {
        let sum: Option<String> = sqlx::query_scalar(&format!(
            "SELECT md5(string_agg(t::text, E'\\n' ORDER BY t::text)) FROM {schema}.{table} t"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        sums.insert(format!("{schema}.{table}"), sum.unwrap_or_default());
    }
    sums
}

/// A database `shop` on `postgres`, migrated and seeded with the demo catalog; its URL.
async fn seeded_shop_database(postgres: &OwnPostgres, redis: &OwnRedis) -> String {
    let admin = PgPool::connect(&postgres.url("postgres")).await.unwrap();
    sqlx::query("CREATE DATABASE shop")
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let url = postgres.url("shop");
    for step in [&["migrate"][..], &["seed"][..]] {
        let done = shop(&url, &redis.url()).args(step).output().unwrap();
        assert!(done.status.success(), "{step:?}: {done:?}");
    }
    url
}

/// `n` customers registered through `command_api`: their access tokens.
async fn customers(client: &reqwest::Client, command_api: &str, n: usize) -> Vec<String> {
    let mut tokens = Vec::new();
    for _ in 0..n {
        let email = format!("{}@shop.test", Uuid::new_v4().simple());
        let body = json!({"email": email, "password": "a long enough password", "name": "Shopper"});
        let response = client
            .post(format!("{command_api}/api/auth/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let session: Value = response.json().await.unwrap();
        tokens.push(session["access_token"].as_str().unwrap().to_owned());
    }
    tokens
}

/// A shopper per token, until `until`.
fn shoppers(
    client: &reqwest::Client,
    bases: &Arc<RwLock<Vec<(String, String)>>>,
    tokens: Vec<String>,
    seen: &Arc<Mutex<Seen>>,
    until: Instant,
) -> Vec<tokio::task::JoinHandle<()>> {
    tokens
        .into_iter()
        .enumerate()
        .map(|(n, token)| {
            tokio::spawn(shopper(
                client.clone(),
                bases.clone(),
                token,
                seen.clone(),
                until,
                n,
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_survive_a_killed_process_and_database_and_redis_restarts() {
    let postgres = Arc::new(OwnPostgres::start());
    let mut redis = OwnRedis::start();
    let url = seeded_shop_database(&postgres, &redis).await;
    let redis_url = redis.url();
    let mut first = Serving::start(&url, &redis_url);
    let second = Serving::start(&url, &redis_url);
    let bases = Arc::new(RwLock::new(vec![
        (first.command_api.clone(), first.query_api.clone()),
        (second.command_api.clone(), second.query_api.clone()),
    ]));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let tokens = customers(&client, &second.command_api, 6).await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let started = Instant::now();
    let until = started + Duration::from_secs(16);
    let shoppers = shoppers(&client, &bases, tokens, &seen, until);

    // the faults
    tokio::time::sleep(Duration::from_secs(3)).await;
    first.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    first = Serving::start(&url, &redis_url);
    bases.write().unwrap()[0] = (first.command_api.clone(), first.query_api.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let database_restarted = Instant::now();
    tokio::task::spawn_blocking({
        let postgres = postgres.clone();
        move || postgres.pg_ctl("restart")
    })
    .await
    .unwrap();
    let database_back = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.restart();
    for shopper in shoppers {
        shopper.await.unwrap();
    }

    let (accepted, errors, recovery) = {
        let seen = seen.lock().unwrap();
        let recovery = seen
            .accepted_at
            .iter()
            .filter(|at| **at > database_back)
            .min()
            .map(|at| at.duration_since(database_restarted));
        (seen.accepted.clone(), seen.errors.clone(), recovery)
    };
    println!(
        "faults: {} checkouts accepted in {:.1} s; errors seen by clients: {errors:?}; the database restart took {:?}; first checkout accepted after it {recovery:?} after the restart began",
        accepted.len(),
        started.elapsed().as_secs_f64(),
        database_back.duration_since(database_restarted),
    );
    assert!(
        accepted.len() >= 20,
        "too few checkouts got through: {}",
        accepted.len()
    );
    let recovery = recovery.expect("checkouts succeeded again after the database restart");
    assert!(recovery < Duration::from_secs(10), "{recovery:?}");

    // every accepted checkout settles, exactly once
    let pool = PgPool::connect(&url).await.unwrap();
    let ids: Vec<String> = accepted.iter().map(Uuid::to_string).collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    let settled = loop {
        let settled: Vec<(String, i64)> = sqlx::query_as(
            "SELECT aggregate_id, count(*) FROM events
              WHERE aggregate_type = 'checkout' AND aggregate_id = ANY($1)
                AND event_type IN ('CheckoutCompleted', 'CheckoutFailed')
              GROUP BY aggregate_id",
        )
        .bind(&ids)
        .fetch_all(&pool)
        .await
        .unwrap();
        if settled.len() == ids.len() || Instant::now() > deadline {
            break settled;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(settled.len(), ids.len(), "every accepted checkout settled");
    assert!(
        settled.iter().all(|(_, n)| *n == 1),
        "settled once: {settled:?}"
    );
    let placed: Vec<(String, i64)> = sqlx::query_as(
        "SELECT aggregate_id, count(*) FROM events
          WHERE aggregate_type = 'order' AND event_type = 'OrderPlaced' AND aggregate_id = ANY($1)
          GROUP BY aggregate_id",
    )
    .bind(&ids)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        placed.len(),
        ids.len(),
        "every accepted checkout placed its order"
    );
    assert!(placed.iter().all(|(_, n)| *n == 1), "placed once");
    let captured_twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT aggregate_id FROM events
                                WHERE aggregate_type = 'payment' AND event_type = 'PaymentCaptured'
                                GROUP BY aggregate_id HAVING count(*) > 1) twice",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(captured_twice, 0, "no payment captured twice");

    // nothing sold beyond stock
    let stores = schemas::stores::Stores::new(&pool);
    for (sku, stock) in [("SPK-10", 12u64), ("HP-200", 25), ("HP-100", 40)] {
        let inventory = stores.inventory.load(sku).await.unwrap().aggregate;
        assert_eq!(inventory.on_hand() + sold(&pool, sku).await, stock, "{sku}");
    }
    // the scarcest one sold out while both processes reserved it: contention really happened
    assert_eq!(
        sold(&pool, "SPK-10").await,
        12,
        "SPK-10 sold out, and not beyond"
    );

    // the read models catch up, then equal a rebuild from scratch
    let head: (i64, i64) = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position FROM events
          ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let behind: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM subscription_checkpoints
              WHERE name LIKE 'pg:%' AND (transaction_id::text::bigint, global_position) < ($1, $2)",
        )
        .bind(head.0)
        .bind(head.1)
        .fetch_one(&pool)
        .await
        .unwrap();
        if behind == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "read models did not catch up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    first.kill();
    drop(second);
    let live = read_model_checksums(&pool).await;
    assert!(live.len() >= 3, "{live:?}");
    let rebuilt = shop(&url, &redis_url)
        .args(["rebuild", "--all"])
        .output()
        .unwrap();
    assert!(rebuilt.status.success(), "{rebuilt:?}");
    assert_eq!(
        read_model_checksums(&pool).await,
        live,
        "read models equal a rebuild"
    );

    let verified = shop(&url, &redis_url)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(verified.status.success(), "audit verify: {verified:?}");
    pool.close().await;
}

/// Units of `sku` committed to orders and not returned (from the inventory's events).
async fn sold(pool: &PgPool, sku: &str) -> u64 {
    let committed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events
          WHERE aggregate_type = 'inventory' AND aggregate_id = $1
            AND event_type = 'ReservationCommitted'",
    )
    .bind(sku)
    .fetch_one(pool)
    .await
    .unwrap();
    committed as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_restarts_under_load_answer_503_with_retry_after_never_500() {
    let postgres = Arc::new(OwnPostgres::start());
    let redis = OwnRedis::start();
    let url = seeded_shop_database(&postgres, &redis).await;
    let serving = Serving::start(&url, &redis.url());
    let bases = Arc::new(RwLock::new(vec![(
        serving.command_api.clone(),
        serving.query_api.clone(),
    )]));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let tokens = customers(&client, &serving.command_api, 6).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let until = Instant::now() + Duration::from_secs(10);
    let shoppers = shoppers(&client, &bases, tokens, &seen, until);
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let postgres = postgres.clone();
        tokio::task::spawn_blocking(move || postgres.pg_ctl("restart"))
            .await
            .unwrap();
    }
    for shopper in shoppers {
        shopper.await.unwrap();
    }
    let seen = seen.lock().unwrap();
    println!(
        "database restarts: {} checkouts accepted; answers that were not a success: {:?}",
        seen.accepted.len(),
        seen.errors
    );
    assert!(seen.accepted.len() >= 10, "{}", seen.accepted.len());
    let unexpected: Vec<_> = seen
        .errors
        .keys()
        .filter(|what| !matches!(what.as_str(), "503" | "graphql service_unavailable"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "only 503 with Retry-After (service_unavailable in GraphQL) while the database restarts: {:?}",
        seen.errors
    );
}
