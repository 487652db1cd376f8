//! `shop serve` (every role in one process) and the single-role commands: [`crate::app::start`],
//! then run until Ctrl-C or SIGTERM and drain.

use std::process::ExitCode;

use crate::app::{self, Roles, Stopped};
use crate::config::RoleConfig;

pub async fn run(config: &RoleConfig, roles: Roles) -> anyhow::Result<ExitCode> {
    let started = app::start(config, roles).await?;
    let shutdown = started.shutdown();
    tokio::spawn(async move {
        stop_signal().await;
        tracing::info!("shutting down");
        shutdown.stop();
    });
    Ok(match started.run_until_stopped().await? {
        Stopped::Drained => ExitCode::SUCCESS,
        Stopped::GaveUp => ExitCode::FAILURE,
    })
}

/// Returns on Ctrl-C or SIGTERM.
async fn stop_signal() {
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
}
