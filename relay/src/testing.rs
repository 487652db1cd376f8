//! A Kafka-protocol broker of a test's own (nisshi on PostgreSQL, see DESIGN.md): a free port and
//! a database for its storage; it can be stopped and resumed mid-test.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eventlog::testing::TestDatabase;

/// The broker binary: `SHOP_KAFKA_BROKER_BIN`, else where `scripts/setup.sh` builds it.
pub fn broker_binary() -> String {
    std::env::var("SHOP_KAFKA_BROKER_BIN").unwrap_or_else(|_| {
        format!(
            "{}/.cache/shop/nisshi-0.7.0/bin/nisshi",
            std::env::var("HOME").unwrap_or_default()
        )
    })
}

/// A broker of this test's own: a free port and a PostgreSQL database for its storage.
pub struct Broker {
    port: u16,
    storage: String,
    process: Option<Child>,
}

impl Broker {
    pub async fn start(db: &TestDatabase) -> Broker {
        Broker::start_beside(&db.pool, &db.name).await
    }

    /// A broker whose storage is a new database `<database>_kafka` on `pool`'s server.
    pub async fn start_beside(pool: &sqlx::PgPool, database: &str) -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let name = format!("{database}_kafka");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(pool)
            .await
            .unwrap();
        let server = eventlog::testing::server_url();
        let base = server.rsplit_once('/').unwrap().0.replacen(
            "postgres://postgres@",
            "postgres://postgres:postgres@",
            1,
        );
        let mut broker = Broker {
            port,
            storage: format!("{base}/{name}?sslmode=disable"),
            process: None,
        };
        broker.resume();
        broker
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn resume(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(broker_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args([
                "--storage-engine",
                &self.storage,
                "--group-initial-rebalance-delay",
                "0s",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {} ({e}); run scripts/setup.sh", broker_binary()));
        self.process = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "the broker did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}
