//! What every end-to-end suite shares (each suite's `main.rs` includes it with
//! `#[path = "../support/mod.rs"] mod support;`): one database helper ([`E2eDatabase`]: a
//! `shop_e2e_<id>` database dropped when the test ends, passed or failed) and one process
//! spawner ([`ShopProcess`]: `shop <role>` with an environment, ready once it printed where it
//! listens, killed on drop). A test that needs no separate process starts the roles in process
//! instead, with `shop::app::start` on port 0.

#![allow(dead_code)] // each suite uses its own part of the harness

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const SHOP: &str = env!("CARGO_BIN_EXE_shop");

/// The PostgreSQL server the suites create their databases on: `SHOP_TEST_DATABASE_URL`, else
/// the local default.
pub fn server_url() -> String {
    std::env::var("SHOP_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database of one test on the test server, named `shop_e2e_<id>`. It is not created here
/// (`shop migrate` creates it, which the suites test); dropped with `WITH (FORCE)` on drop, and
/// so is the `<name>_kafka` database of a test broker beside it.
pub struct E2eDatabase {
    pub name: String,
    pub url: String,
}

impl E2eDatabase {
    /// A fresh name and its URL; the database does not exist yet.
    pub fn new() -> Self {
        let name = format!("shop_e2e_{}", uuid::Uuid::new_v4().simple());
        let server = server_url();
        let base = server
            .rsplit_once('/')
            .map_or(server.as_str(), |(base, _)| base);
        let url = format!("{base}/{name}");
        Self { name, url }
    }

    /// A fresh database with every migration applied by `shop migrate`.
    pub fn migrated() -> Self {
        let database = Self::new();
        let migrated = shop(&database.url).arg("migrate").output().unwrap();
        assert!(migrated.status.success(), "{migrated:?}");
        database
    }

    /// [`E2eDatabase::migrated`], with `shop seed`'s demo catalog.
    pub fn seeded() -> Self {
        let database = Self::migrated();
        let seeded = shop(&database.url).arg("seed").output().unwrap();
        assert!(seeded.status.success(), "{seeded:?}");
        database
    }

    /// A pool on this database.
    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.url).await.unwrap()
    }

    /// `shop <args>` on this database, run to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        shop(&self.url).args(args).output().expect("run shop")
    }
}

impl Default for E2eDatabase {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for E2eDatabase {
    /// On a thread of its own with its own runtime: a `Drop` cannot await, and the test's
    /// runtime may be the current-thread one.
    fn drop(&mut self) {
        let names = [self.name.clone(), format!("{}_kafka", self.name)];
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let Ok(admin) = sqlx::PgPool::connect(&server_url()).await else {
                    return;
                };
                for name in names {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&admin)
                        .await;
                }
                admin.close().await;
            });
        })
        .join();
        if dropped.is_err() {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

/// The `shop` binary on `database_url`, with warnings only in its logs and nothing of the
/// caller's environment that would start more than a test asks for (anchors, Kafka).
pub fn shop(database_url: &str) -> Command {
    let mut command = Command::new(SHOP);
    command
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .env_remove("SHOP_AUDIT_ANCHOR_DIR")
        .env_remove("SHOP_KAFKA_BROKERS")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    command
}

/// A running `shop` process, killed (SIGKILL) and reaped on drop, so a failing test leaves no
/// process behind; with the base URL of each listener it printed (`command API`, `query API`,
/// `operations`).
pub struct ShopProcess {
    child: Child,
    urls: BTreeMap<String, String>,
    /// Every line it printed before it was ready.
    pub printed: Vec<String>,
}

impl ShopProcess {
    /// Spawns `command` (stdout is taken) and waits until it printed `listeners` "... listening
    /// on http://..." lines; its later output is read and dropped, so it never blocks on a full
    /// pipe.
    pub fn spawn(mut command: Command, listeners: usize) -> Self {
        let mut child = command.stdout(Stdio::piped()).spawn().expect("spawn shop");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut urls, mut printed) = (BTreeMap::new(), Vec::new());
        while urls.len() < listeners {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                let status = child.wait();
                panic!("shop ended before it was ready ({status:?}); it printed {printed:?}");
            };
            if let Some((what, base)) = line.split_once(" listening on ") {
                urls.insert(what.to_owned(), base.to_owned());
            }
            printed.push(line);
        }
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            urls,
            printed,
        }
    }

    /// `shop <role>` on `database_url` with its APIs on random ports, the local payment
    /// gateway and `env`, ready once its `listeners` listen.
    pub fn role(role: &str, database_url: &str, env: &[(&str, &str)], listeners: usize) -> Self {
        let mut command = shop(database_url);
        command
            .arg(role)
            .env("SHOP_PAYMENT_GATEWAY", "local")
            .stderr(Stdio::null());
        if role != "probe" {
            command.args([
                "--command-api-addr",
                "127.0.0.1:0",
                "--query-api-addr",
                "127.0.0.1:0",
            ]);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        Self::spawn(command, listeners)
    }

    /// The base URL (`http://host:port`) of a listener it printed.
    pub fn url(&self, listener: &str) -> String {
        self.urls
            .get(listener)
            .unwrap_or_else(|| panic!("no {listener} in {:?}", self.printed))
            .clone()
    }

    /// `host:port` of a listener.
    pub fn addr(&self, listener: &str) -> String {
        self.url(listener).trim_start_matches("http://").to_owned()
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM (a graceful stop).
    pub fn sigterm(&self) {
        let signalled = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(signalled.success());
    }

    /// SIGTERM, then its exit status once it stopped within `within` (`None`: still running).
    pub async fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        self.sigterm();
        self.exit_within(within).await
    }

    /// [`ShopProcess::exit_within`] for a test that has nothing else to run meanwhile.
    pub fn exit_within_blocking(&mut self, within: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if started.elapsed() > within {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What it wrote to stderr, when the command piped it (read to the end: after it exited).
    pub fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        }
        text
    }

    /// Its exit status once it exited within `within`.
    pub async fn exit_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if started.elapsed() > within {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ShopProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
