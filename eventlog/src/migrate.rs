//! The database schema, applied in order and idempotently by `shop migrate`.
//!
//! Each migration runs once, in its own transaction, under an advisory lock so two processes
//! starting together do not race. A migration whose text changed after it was applied is an error:
//! history is fixed, changes go in a new migration.

use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::{Error, Result};

/// A migration: a version, a name and its SQL.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration of the event log, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "event_store",
        sql: include_str!("../migrations/0001_event_store.sql"),
    },
    Migration {
        version: 2,
        name: "append_group",
        sql: include_str!("../migrations/0002_append_group.sql"),
    },
    Migration {
        version: 3,
        name: "append_group_per_command",
        sql: include_str!("../migrations/0003_append_group_per_command.sql"),
    },
];

/// What a run of [`run`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied: Vec<i64>,
    pub already_applied: Vec<i64>,
}

const LOCK_KEY: i64 = 0x5_4e0b_0001;

/// Applies every pending migration of `migrations`.
pub async fn run<'m>(
    pool: &PgPool,
    migrations: impl IntoIterator<Item = &'m Migration>,
) -> Result<MigrationReport> {
    let mut report = MigrationReport::default();
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    bigint PRIMARY KEY,
            name       text NOT NULL,
            checksum   bytea NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut *tx)
    .await?;
    for migration in migrations {
        let checksum = Sha256::digest(migration.sql.as_bytes()).to_vec();
        let applied: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT checksum FROM schema_migrations WHERE version = $1")
                .bind(migration.version)
                .fetch_optional(&mut *tx)
                .await?;
        match applied {
            Some(existing) if existing == checksum => {
                report.already_applied.push(migration.version)
            }
            Some(_) => {
                return Err(Error::MigrationChanged {
                    version: migration.version,
                    name: migration.name.to_owned(),
                })
            }
            None => {
                sqlx::raw_sql(migration.sql).execute(&mut *tx).await?;
                sqlx::query(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                )
                .bind(migration.version)
                .bind(migration.name)
                .bind(checksum)
                .execute(&mut *tx)
                .await?;
                report.applied.push(migration.version);
            }
        }
    }
    tx.commit().await?;
    Ok(report)
}
