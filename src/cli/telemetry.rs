//! Logs and HTTP metrics: JSON logs (pretty on a terminal), and one latency histogram and
//! request counter per API, route template, method and status.

use std::io::IsTerminal;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;

/// Every metric shop exports, with what it means: described to the recorder at start (so
/// `/metrics` carries `# HELP` lines), and the list the deploy files are checked against.
pub const METRICS: &[(&str, &str)] = &[
    ("shop_http_requests_total", "HTTP requests answered, by api, route template, method and status"),
    ("shop_http_request_duration_seconds", "HTTP request latency, by api, route template, method and status"),
    ("shop_commands_total", "commands run through the event store, by aggregate and outcome (ok, rejected, refused, conflict, replayed, unchanged, error)"),
    ("shop_events_appended_total", "events appended, by aggregate and event type"),
    ("shop_api_errors_total", "error answers (problem+json) of the command API and the Stripe webhook, by error code"),
    ("shop_projection_position", "global position of each read model's checkpoint"),
    ("shop_projection_lag_events", "events each read model has still to apply"),
    ("shop_projection_lag_seconds", "age of the oldest event each read model has still to apply"),
    ("shop_log_held_back_events", "committed events readers cannot read yet (an older transaction is open)"),
    ("shop_log_oldest_open_transaction_seconds", "age of the oldest open writing transaction"),
    ("shop_timers_pending", "durable timers waiting, by kind (a checkout timer is a checkout in flight)"),
    ("shop_timers_due", "durable timers past their due time"),
    ("shop_saga_parked", "saga work (checkouts, reservation expiries) parked for staff after bounded retries"),
    ("shop_saga_parked_total", "saga work parked after bounded retries, by timer kind"),
    ("shop_saga_leader_lost_total", "times the saga's log follower lost its leader lock (connection broke)"),
    ("shop_relay_published_total", "events the relay published and the broker acknowledged"),
    ("shop_relay_up", "1 while the relay's last batch was acknowledged, 0 while the broker refuses"),
    ("shop_relay_lag_events", "events the relay has still to publish (once a relay has run)"),
    ("shop_relay_lag_seconds", "age of the oldest event the relay has still to publish"),
    ("shop_dead_letters_total", "messages Kafka consumers could not handle and set aside"),
    ("shop_db_pool_connections", "this process's PostgreSQL connections, by state (idle, in_use)"),
];

/// Describes [`METRICS`] to the installed recorder.
pub fn describe_metrics() {
    for (name, help) in METRICS {
        if name.ends_with("_seconds") && name.contains("duration") {
            metrics::describe_histogram!(*name, metrics::Unit::Seconds, *help);
        } else if name.ends_with("_total") {
            metrics::describe_counter!(*name, *help);
        } else {
            metrics::describe_gauge!(*name, *help);
        }
    }
}

/// The trace pipeline, kept to flush it at exit.
static TRACER_PROVIDER: std::sync::OnceLock<opentelemetry_sdk::trace::SdkTracerProvider> =
    std::sync::OnceLock::new();

type Subscriber =
    tracing_subscriber::layer::Layered<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;
type BoxedLayer = Box<dyn tracing_subscriber::Layer<Subscriber> + Send + Sync>;

/// Logs to stderr: JSON lines, or human-readable when `SHOP_LOG_FORMAT=pretty` or (unset) on a
/// terminal. `RUST_LOG` filters (default `info,sqlx=warn`). When `OTEL_EXPORTER_OTLP_ENDPOINT`
/// (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, spans are also exported there over
/// OTLP/HTTP (protobuf) as service `shop` (`OTEL_SERVICE_NAME` overrides).
pub fn init_logs() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let json = match std::env::var("SHOP_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("pretty") => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let mut layers: Vec<BoxedLayer> = Vec::new();
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if json {
        layers.push(
            logs.json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .boxed(),
        );
    } else {
        layers.push(logs.boxed());
    }
    let otlp_configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.is_empty()));
    let mut otlp_error = None;
    if otlp_configured {
        match tracer_provider() {
            Ok(provider) => {
                use opentelemetry::trace::TracerProvider;
                let tracer = provider.tracer("shop");
                layers.push(tracing_opentelemetry::layer().with_tracer(tracer).boxed());
                let _ = TRACER_PROVIDER.set(provider);
            }
            Err(error) => otlp_error = Some(error),
        }
    }
    tracing_subscriber::registry()
        .with(filter)
        .with(layers)
        .init();
    if let Some(error) = otlp_error {
        tracing::error!(%error, "OTLP trace export is off");
    }
}

/// Builds the OTLP pipeline on a thread of its own: the blocking HTTP client must not be made
/// (or dropped) on the async runtime's threads.
fn tracer_provider() -> Result<opentelemetry_sdk::trace::SdkTracerProvider, String> {
    std::thread::spawn(|| {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| e.to_string())?;
        let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "shop".to_owned());
        Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(service)
                    .build(),
            )
            .build())
    })
    .join()
    .map_err(|_| "the OTLP set-up panicked".to_owned())?
}

/// Sends the spans still buffered (at exit).
pub fn flush_traces() {
    if let Some(provider) = TRACER_PROVIDER.get() {
        if let Err(error) = provider.shutdown() {
            eprintln!("OTLP: {error}");
        }
    }
}

/// Adds the request metrics of `api` (e.g. `command`, `query`, `ops`) to every route of `router`.
pub fn with_http_metrics(router: Router, api: &'static str) -> Router {
    router.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| record(api, request, next),
    ))
}

async fn record(api: &'static str, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let labels = [
        ("api", api.to_owned()),
        ("route", route),
        ("method", method),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("shop_http_requests_total", &labels).increment(1);
    metrics::histogram!("shop_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}
