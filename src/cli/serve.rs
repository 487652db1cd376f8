//! `shop serve` (every role in one process) and the single-role commands: bind each API's
//! listener, print where it listens, and stop cleanly on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{ListenConfig, SecretConfig, StoreConfig};

/// Which roles this process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Roles {
    All,
    CommandApi,
}

pub async fn run(
    stores: &StoreConfig,
    listen: &ListenConfig,
    secrets: &SecretConfig,
    roles: Roles,
) -> anyhow::Result<ExitCode> {
    let pool = super::connect(stores).await?;
    let stop = shutdown_signal();
    let mut servers = tokio::task::JoinSet::new();

    let state = command_api::AppState::new(
        pool.clone(),
        &secrets.jwt_secret(),
        command_api::ApiConfig::default(),
    );
    let listener = bind(listen.command_api_addr, "command API").await?;
    println!("command API listening on http://{}", listener.local_addr()?);
    servers.spawn(serve(listener, command_api::router(state), stop.clone()));

    if roles == Roles::All {
        let listener = bind(listen.query_api_addr, "query API").await?;
        println!("query API listening on http://{}", listener.local_addr()?);
        let router = command_api::health_router(pool.clone());
        servers.spawn(serve(listener, router, stop.clone()));
    }

    while let Some(result) = servers.join_next().await {
        result.context("a server task panicked")??;
    }
    pool.close().await;
    println!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for the {what} on {addr}"))
}

async fn serve(
    listener: TcpListener,
    router: Router,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    })
    .await
    .context("server failed")
}

/// Turns `true` once, on Ctrl-C or SIGTERM.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (sender, receiver) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = terminate.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
        tracing::info!("shutting down");
        let _ = sender.send(true);
    });
    receiver
}
