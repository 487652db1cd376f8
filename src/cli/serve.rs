//! `shop serve`: every role in one process. Binds each API's listener, prints where it listens,
//! and stops cleanly on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::config::{ListenConfig, StoreConfig};

pub async fn run(stores: &StoreConfig, listen: &ListenConfig) -> anyhow::Result<ExitCode> {
    let pool = super::connect(stores).await?;
    let command_api = bind(listen.command_api_addr, "command API").await?;
    let query_api = bind(listen.query_api_addr, "query API").await?;
    println!(
        "command API listening on http://{}",
        command_api.local_addr()?
    );
    println!("query API listening on http://{}", query_api.local_addr()?);

    let shutdown = tokio_util_shutdown();
    let serve = |listener: TcpListener| {
        let router = health_router(pool.clone());
        let mut stop = shutdown.subscribe();
        async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.recv().await;
                })
                .await
        }
    };
    let (commands, queries) = tokio::join!(serve(command_api), serve(query_api));
    commands.context("command API failed")?;
    queries.context("query API failed")?;
    println!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for the {what} on {addr}"))
}

/// A broadcast that fires once on Ctrl-C or SIGTERM.
fn tokio_util_shutdown() -> tokio::sync::broadcast::Sender<()> {
    let (sender, _) = tokio::sync::broadcast::channel(1);
    let trigger = sender.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = terminate.recv() => {},
        }
        tracing::info!("shutting down");
        let _ = trigger.send(());
    });
    sender
}

/// `/health/live` (the process answers) and `/health/ready` (PostgreSQL answers).
pub fn health_router(pool: PgPool) -> Router {
    Router::new()
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready))
        .with_state(pool)
}

async fn ready(State(pool): State<PgPool>) -> (StatusCode, &'static str) {
    match sqlx::query("SELECT 1").execute(&pool).await {
        Ok(_) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}
