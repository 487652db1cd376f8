//! How far behind the read side is, as Prometheus metrics (`/metrics`) and in readiness: the
//! query API's `/health/ready` answers 503 while a read model lags more than the configured
//! seconds, so a load balancer keeps sending reads to replicas that are current.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tokio::sync::watch;

/// Installs the process-wide metrics recorder; `None` if one is installed already.
pub fn install_recorder() -> Option<PrometheusHandle> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .ok()
}

/// `/metrics` in Prometheus text format.
pub fn metrics_router(handle: PrometheusHandle) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(handle): State<PrometheusHandle>| async move { handle.render() }),
        )
        .with_state(handle)
}

/// Refreshes the lag gauges every `every` until `stop`.
pub async fn watch_lag(pool: PgPool, every: Duration, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        if let Err(error) = record_lag(&pool).await {
            tracing::warn!(%error, "cannot measure read-model lag");
        }
        let _ = tokio::time::timeout(every, stop.changed()).await;
    }
}

async fn record_lag(pool: &PgPool) -> anyhow::Result<()> {
    for projection in projections::pg::all() {
        let status = projections::pg::status(pool, projection.as_ref()).await?;
        let labels = [("projection", status.name.clone())];
        metrics::gauge!("shop_projection_lag_events", &labels).set(status.lag_events as f64);
        metrics::gauge!("shop_projection_lag_seconds", &labels).set(status.lag_seconds);
        metrics::gauge!("shop_projection_position", &labels)
            .set(status.position.global_position as f64);
    }
    let log = eventlog::log::status(pool).await?;
    metrics::gauge!("shop_log_held_back_events").set(log.held_back_events as f64);
    metrics::gauge!("shop_log_oldest_open_transaction_seconds")
        .set(log.oldest_open_transaction_seconds);
    Ok(())
}

#[derive(Clone)]
struct ReadinessState {
    pool: PgPool,
    max_lag_seconds: f64,
}

/// `/health/live`, and `/health/ready`: PostgreSQL answers and no read model lags more than
/// `max_lag_seconds`.
pub fn health_router(pool: PgPool, max_lag_seconds: f64) -> Router {
    Router::new()
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(ready))
        .with_state(ReadinessState {
            pool,
            max_lag_seconds,
        })
}

async fn ready(State(state): State<ReadinessState>) -> (StatusCode, String) {
    let mut lagging = Vec::new();
    for projection in projections::pg::all() {
        match projections::pg::status(&state.pool, projection.as_ref()).await {
            Ok(status) if status.lag_seconds > state.max_lag_seconds => lagging.push(format!(
                "{} {:.0} s behind",
                status.name, status.lag_seconds
            )),
            Ok(_) => {}
            Err(_) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database unavailable".to_owned(),
                )
            }
        }
    }
    if lagging.is_empty() {
        (StatusCode::OK, "ready".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("read models lagging: {}", lagging.join(", ")),
        )
    }
}
