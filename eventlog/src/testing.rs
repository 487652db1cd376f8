//! Throwaway databases for tests: each test gets a fresh, migrated database on the real
//! PostgreSQL server, so tests run in parallel without seeing each other's events.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::migrate;

/// The server tests use: `SHOP_TEST_DATABASE_URL`, else `DATABASE_URL`, else the local default.
pub fn server_url() -> String {
    std::env::var("SHOP_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that exists for one test.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
    admin: PgConnectOptions,
}

impl TestDatabase {
    /// Creates a new database, applies every migration in `migrations`, and connects a pool of
    /// `max_connections`.
    pub async fn create<'m>(
        migrations: impl IntoIterator<Item = &'m migrate::Migration>,
        max_connections: u32,
    ) -> Self {
        let admin: PgConnectOptions = server_url().parse().expect("test database url");
        let name = format!("shop_test_{}", uuid::Uuid::new_v4().simple());
        let mut connection = admin.connect().await.expect("connect to the test server");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut connection)
            .await
            .expect("create test database");
        let options = admin.clone().database(&name);
        let url = options.to_url_lossy().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options)
            .await
            .expect("connect to the test database");
        migrate::run(&pool, migrations).await.expect("migrate");
        Self {
            name,
            url,
            pool,
            admin,
        }
    }

    /// Closes the pool and drops the database.
    pub async fn drop(self) {
        self.pool.close().await;
        if let Ok(mut connection) = self.admin.connect().await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut connection)
            .await;
        }
    }
}
