//! The container image, built and run for real when podman is present (it is skipped, saying so,
//! when it is not; `scripts/test.sh` installs podman, so CI runs it). `scripts/image.sh` builds
//! the image from this test build's `shop` binary over the Debian base it makes with debootstrap
//! (once per machine: the first run takes minutes, later runs reuse it). The container migrates
//! and seeds its own fresh database and serves every role against the host's PostgreSQL and Redis
//! (host network, free ports, the local payment gateway); the test waits for `/health/ready`,
//! runs the image's health check, reads the catalog through GraphQL, checks a guest cart out
//! through REST until the order is confirmed, checks the server runs as uid 10001, and removes
//! the container, the image and the database.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "../support/mod.rs"]
mod support;

use support::{E2eDatabase, SHOP};

const UNPRIVILEGED_UID: &str = "10001";

fn podman_present() -> bool {
    Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// podman with what this machine needs (`scripts/podman.sh`: the OCI runtime, the limits).
fn podman_command() -> Command {
    Command::new(root().join("scripts/podman.sh"))
}

fn podman(args: &[&str]) -> Output {
    podman_command()
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("podman {args:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A port nobody listens on now (the kernel's choice, released for the container to bind).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What the test made; removed on drop, also when an assertion fails (the container first,
/// then the image, then the database: fields drop after `drop`).
struct Made {
    image: String,
    container: String,
    database: E2eDatabase,
}

impl Drop for Made {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.container]);
        let _ = podman(&["rmi", "--force", &self.image]);
    }
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    cart_token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = client.post(url).json(&body);
    if let Some(token) = cart_token {
        request = request.header("cart-token", token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn graphql(
    client: &reqwest::Client,
    query_api: &str,
    query: &str,
    variables: Value,
) -> Value {
    let (status, answer) = post(
        client,
        &format!("{query_api}/graphql"),
        None,
        json!({"query": query, "variables": variables}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

#[tokio::test]
async fn the_image_serves_both_apis_unprivileged_against_the_hosts_stores() {
    if !podman_present() {
        eprintln!(
            "podman is not installed: the container image is not built or run here \
             (scripts/image.sh and scripts/test.sh install it)"
        );
        return;
    }
    let started = Instant::now();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let made = Made {
        image: format!("localhost/shop-test:{id}"),
        container: format!("shop-test-{id}"),
        database: E2eDatabase::new(),
    };

    // the image, from this build's binary (the base is made once per machine and reused)
    let build = Command::new(root().join("scripts/image.sh"))
        .args(["--binary", SHOP, "--tag", &made.image])
        .output()
        .unwrap();
    println!("{}{}", text(&build.stdout), text(&build.stderr));
    assert!(build.status.success(), "scripts/image.sh failed");
    println!("image built in {:.1?}", started.elapsed());
    let labels = podman(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}} {{json .Config.Entrypoint}}",
        &made.image,
    ]);
    assert_eq!(
        text(&labels.stdout).trim(),
        r#"10001:10001 ["/usr/local/bin/shop"]"#
    );

    // migrate and seed a fresh database from the image, then serve every role from it
    let database_env = format!("DATABASE_URL={}", made.database.url);
    for command in ["migrate", "seed"] {
        let output = podman(&[
            "run",
            "--rm",
            "--network",
            "host",
            "--env",
            &database_env,
            &made.image,
            command,
        ]);
        assert!(
            output.status.success(),
            "shop {command} in the container: {}",
            text(&output.stderr)
        );
    }
    let (command_port, query_port, ops_port) = (free_port(), free_port(), free_port());
    let command_api = format!("http://127.0.0.1:{command_port}");
    let query_api = format!("http://127.0.0.1:{query_port}");
    let ops = format!("http://127.0.0.1:{ops_port}");
    let mut run = podman_command();
    run.args(["run", "--detach", "--network", "host", "--name"])
        .arg(&made.container);
    if !std::path::Path::new("/run/systemd/system").exists() {
        // no systemd to run the health check's timer: `podman healthcheck run` below runs it
        run.args(["--health-interval", "disable"]);
    }
    let run = run
        .args(["--env", &database_env])
        .args(["--env", "REDIS_URL=redis://127.0.0.1:6379"])
        .args(["--env", "SHOP_PAYMENT_GATEWAY=local"])
        .args(["--env", "RUST_LOG=warn"])
        .arg("--env")
        .arg(format!("SHOP_COMMAND_API_ADDR=127.0.0.1:{command_port}"))
        .arg("--env")
        .arg(format!("SHOP_QUERY_API_ADDR=127.0.0.1:{query_port}"))
        .arg("--env")
        .arg(format!("SHOP_OPS_ADDR=127.0.0.1:{ops_port}"))
        .arg("--env")
        .arg(format!("SHOP_PROBE_URL={ops}/health/live"))
        .arg(&made.image)
        .arg("serve")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(run.status.success(), "podman run: {}", text(&run.stderr));

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ready = client.get(format!("{ops}/health/ready")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        let state = podman(&["inspect", "--format", "{{.State.Status}}", &made.container]);
        let logs = podman(&["logs", &made.container]);
        assert!(
            Instant::now() < deadline && text(&state.stdout).trim() == "running",
            "the container is not ready ({}): {}{}",
            text(&state.stdout).trim(),
            text(&logs.stdout),
            text(&logs.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("ready after {:.1?}", started.elapsed());

    // the server is the container's first process, and it is not root (on the host either:
    // no user namespace)
    let pid = podman(&["inspect", "--format", "{{.State.Pid}}", &made.container]);
    let pid = text(&pid.stdout).trim().to_owned();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uids: Vec<&str> = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        uids, [UNPRIVILEGED_UID; 4],
        "real, effective, saved, fs uid"
    );
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(
        text(&cmdline).split('\0').collect::<Vec<_>>(),
        ["/usr/local/bin/shop", "serve", ""]
    );
    // the image's HEALTHCHECK (`shop probe`) passes inside the container
    let health = podman(&["healthcheck", "run", &made.container]);
    assert!(
        health.status.success(),
        "healthcheck: {}{}",
        text(&health.stdout),
        text(&health.stderr)
    );

    // GraphQL: the seeded catalog, once this replica's search index has read it
    let products = "{ products(first: 50) { totalCount edges { node { sku name price { amountMinor } inStock } } } }";
    let mut headphones = Value::Null;
    for _ in 0..150 {
        let answer = graphql(&client, &query_api, products, json!({})).await;
        assert!(answer["errors"].is_null(), "{answer}");
        if let Some(found) = answer["data"]["products"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|edge| edge["node"]["sku"] == "HP-100")
        {
            assert!(
                answer["data"]["products"]["totalCount"].as_i64().unwrap() >= 12,
                "{answer}"
            );
            headphones = found["node"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(headphones["name"], "Studio headphones", "{headphones}");
    assert_eq!(headphones["price"]["amountMinor"], 12_900);
    assert_eq!(headphones["inStock"], true);

    // REST: a guest cart, a refused line, a line, a checkout; the order confirms
    let (status, cart) = post(
        &client,
        &format!("{command_api}/api/carts"),
        None,
        json!({}),
    )
    .await;
    assert_eq!(status, 201, "{cart}");
    let cart_id = cart["cart_id"].as_str().unwrap().to_owned();
    let token = cart["cart_token"].as_str().unwrap().to_owned();
    let items = format!("{command_api}/api/carts/{cart_id}/items");
    let (status, refused) = post(
        &client,
        &items,
        Some(&token),
        json!({"sku": "NO-SUCH-1", "quantity": 1}),
    )
    .await;
    assert_eq!(status, 404, "{refused}");
    assert_eq!(refused["code"], "not_found", "{refused}");
    let (status, added) = post(
        &client,
        &items,
        Some(&token),
        json!({"sku": "HP-100", "quantity": 2}),
    )
    .await;
    assert!((200..300).contains(&status), "{status} {added}");
    let (status, checkout) = post(
        &client,
        &format!("{command_api}/api/carts/{cart_id}/checkout"),
        Some(&token),
        json!({
            "shipping_address": {"name": "Ada", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"},
            "payment_method": "pm_card_visa"
        }),
    )
    .await;
    assert_eq!(status, 202, "{checkout}");
    let order_id = checkout["order_id"].as_str().unwrap().to_owned();
    let order_query = "query($id: UUID!) { order(id: $id) { status lines { sku quantity } totals { subtotal { amountMinor } } paymentStatus } }";
    let mut order = Value::Null;
    for _ in 0..300 {
        let answer = graphql(&client, &query_api, order_query, json!({"id": order_id})).await;
        order = answer["data"]["order"].clone();
        if order["status"] == "CONFIRMED" && order["paymentStatus"] == "captured" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    assert_eq!(
        order["lines"],
        json!([{"sku": "HP-100", "quantity": 2}]),
        "{order}"
    );
    assert_eq!(order["totals"]["subtotal"]["amountMinor"], 2 * 12_900);
    assert_eq!(order["paymentStatus"], "captured", "{order}");

    // stopping: SIGTERM, and the server exits cleanly
    let stop = podman(&["stop", "--time", "20", &made.container]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    let exit = podman(&[
        "inspect",
        "--format",
        "{{.State.ExitCode}}",
        &made.container,
    ]);
    assert_eq!(text(&exit.stdout).trim(), "0", "exit code after SIGTERM");
    println!("container test done in {:.1?}", started.elapsed());
    drop(made);
}
