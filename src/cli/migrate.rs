//! `shop migrate`: creates the database if it is missing, then applies pending migrations.

use std::process::ExitCode;

use anyhow::Context;
use sqlx::{ConnectOptions, Connection};

use crate::config::StoreConfig;

pub async fn run(stores: &StoreConfig) -> anyhow::Result<ExitCode> {
    create_database_if_missing(stores).await?;
    let pool = super::connect(stores).await?;
    let report = eventlog::migrate::run(&pool, super::all_migrations())
        .await
        .context("migration failed")?;
    println!(
        "migrations: {} applied {:?}, {} already applied",
        report.applied.len(),
        report.applied,
        report.already_applied.len()
    );
    Ok(ExitCode::SUCCESS)
}

async fn create_database_if_missing(stores: &StoreConfig) -> anyhow::Result<()> {
    let options = &stores.database_url.options;
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    if options.connect().await.is_ok() {
        return Ok(());
    }
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", stores.database_url))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        // identifiers cannot be bound as parameters: quote it
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        sqlx::query(&format!("CREATE DATABASE {quoted}"))
            .execute(&mut admin)
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        println!("created database {name}");
    }
    admin.close().await?;
    Ok(())
}
