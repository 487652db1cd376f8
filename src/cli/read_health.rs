//! How far behind the read side is, as Prometheus metrics (`/metrics`) and in readiness: the
//! query API's `/health/ready` answers 503 while a read model lags more than the configured
//! seconds, so a load balancer keeps sending reads to replicas that are current.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tokio::sync::watch;

/// Latency buckets of the request histograms, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the process-wide metrics recorder (latencies as Prometheus histograms, so alerts
/// can take quantiles over replicas); `None` if one is installed already.
pub fn install_recorder() -> Option<PrometheusHandle> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("duration_seconds".into()),
            LATENCY_BUCKETS,
        )
        .ok()?
        .install_recorder()
        .ok()?;
    super::telemetry::describe_metrics();
    Some(handle)
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

/// Refreshes the gauges (read-model lag, timers, this process's connections) every `every` until
/// `stop`.
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
    let timers: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT kind, count(*), count(*) FILTER (WHERE due_at <= now()) FROM timers GROUP BY kind",
    )
    .fetch_all(pool)
    .await?;
    let mut due = 0;
    for kind in [sagas::checkout::DRIVE, sagas::checkout::RESERVATION_EXPIRY] {
        let (pending, kind_due) = timers
            .iter()
            .find(|(k, _, _)| k == kind)
            .map_or((0, 0), |(_, pending, due)| (*pending, *due));
        metrics::gauge!("shop_timers_pending", "kind" => kind).set(pending as f64);
        due += kind_due;
    }
    metrics::gauge!("shop_timers_due").set(due as f64);
    let parked = sagas::timers::parked_count(pool).await?;
    metrics::gauge!("shop_saga_parked").set(parked as f64);
    // the relay's lag, once a relay has run against this log
    let relay: Option<(i64, i64)> = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position FROM subscription_checkpoints
          WHERE name = 'kafka:relay'",
    )
    .fetch_optional(pool)
    .await?;
    if let Some((transaction_id, global_position)) = relay {
        let position = eventlog::LogPosition {
            transaction_id,
            global_position,
        };
        let backlog = eventlog::log::backlog_after(pool, position).await?;
        metrics::gauge!("shop_relay_lag_events").set(backlog.events as f64);
        metrics::gauge!("shop_relay_lag_seconds").set(backlog.oldest_seconds);
    }
    let idle = pool.num_idle() as f64;
    metrics::gauge!("shop_db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("shop_db_pool_connections", "state" => "in_use")
        .set(f64::from(pool.size()) - idle);
    Ok(())
}

/// The read side's readiness: PostgreSQL answers, no read model lags more than
/// `max_lag_seconds`, and the relay's broker (when a relay runs here) acknowledges.
#[derive(Clone)]
struct ReadSideReadiness {
    pool: PgPool,
    max_lag_seconds: f64,
}

/// `/health/live`, and `/health/ready`: PostgreSQL answers and no read model lags more than
/// `max_lag_seconds`.
pub fn health_router(pool: PgPool, max_lag_seconds: f64) -> Router {
    http_vocabulary::health::router(ReadSideReadiness {
        pool,
        max_lag_seconds,
    })
}

impl http_vocabulary::health::Readiness for ReadSideReadiness {
    async fn check(&self) -> Result<(), String> {
        let mut lagging = Vec::new();
        for projection in projections::pg::all() {
            match projections::pg::status(&self.pool, projection.as_ref()).await {
                Ok(status) if status.lag_seconds > self.max_lag_seconds => lagging.push(format!(
                    "{} {:.0} s behind",
                    status.name, status.lag_seconds
                )),
                Ok(_) => {}
                Err(_) => return Err("database unavailable".to_owned()),
            }
        }
        if !relay::broker_reachable() {
            return Err("the relay's Kafka broker does not acknowledge (retrying)".to_owned());
        }
        if lagging.is_empty() {
            Ok(())
        } else {
            Err(format!("read models lagging: {}", lagging.join(", ")))
        }
    }
}
