//! Startup, as a library: [`start`] connects, binds each listener the configuration asks for
//! (port 0 allowed), prints where it listens and spawns every task of the roles asked for;
//! [`Started`] says where the APIs listen, and [`Started::run_until_stopped`] waits for the
//! tasks and drains them once [`Shutdown::stop`] is called. `shop serve` and the single-role
//! commands are this with SIGTERM or Ctrl-C as the stop (`cli::serve`); tests start it in
//! process on port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use sagas::payments::PaymentGateway;

use crate::cli::{audit, read_health, telemetry};
use crate::config::{GatewayKind, PaymentConfig, RoleConfig};

/// Which roles this process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Roles {
    All,
    CommandApi,
    SagaRunner,
    Projector,
    QueryApi,
    Relay,
}

/// A started process: where its APIs listen, and its tasks.
pub struct Started {
    /// The command API's address (with the port chosen when port 0 was asked), if it runs.
    pub command_api_addr: Option<SocketAddr>,
    /// The query API's address, if it runs.
    pub query_api_addr: Option<SocketAddr>,
    /// The operations listener's address, if one was asked for.
    pub ops_addr: Option<SocketAddr>,
    /// The process's connection pool.
    pub pool: sqlx::PgPool,
    tasks: tokio::task::JoinSet<anyhow::Result<()>>,
    shutdown: Shutdown,
    grace: Duration,
}

/// Stops a started process: every task sees it, stops taking work, finishes what it holds
/// (requests in flight, the current batch and its checkpoint, the current saga step) and returns.
#[derive(Clone, Debug)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Shutdown {
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

/// How a started process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Every task finished its work after the stop (or all ended on their own).
    Drained,
    /// In-flight work did not finish within the grace period; the rest was aborted.
    GaveUp,
}

impl Started {
    /// A handle that stops this process (from a signal handler, or a test).
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Waits for every task; after a stop, gives them `SHOP_SHUTDOWN_GRACE_SECONDS` to finish
    /// and aborts the rest. A task's failure ends the wait with its error.
    pub async fn run_until_stopped(mut self) -> anyhow::Result<Stopped> {
        // one cancellation path: on a stop every task stops taking work, finishes what it holds
        // and returns; past the grace period the process gives up
        let mut signalled = self.shutdown.0.subscribe();
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                next = self.tasks.join_next() => match next {
                    None => break,
                    Some(result) => result.context("a server task panicked")??,
                },
                _ = signalled.wait_for(|stopped| *stopped), if deadline.is_none() => {
                    deadline = Some(tokio::time::Instant::now() + self.grace);
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)),
                    if deadline.is_some() => {
                    eprintln!(
                        "in-flight work did not finish within {} s; exiting",
                        self.grace.as_secs()
                    );
                    self.tasks.abort_all();
                    return Ok(Stopped::GaveUp);
                }
            }
        }
        self.pool.close().await;
        println!("stopped");
        Ok(Stopped::Drained)
    }
}

/// Starts the `roles` of `config`: everything is bound and spawned when this returns.
pub async fn start(config: &RoleConfig, roles: Roles) -> anyhow::Result<Started> {
    let RoleConfig {
        stores,
        listen,
        secrets,
        payments,
        limits,
        mail,
        query,
        kafka,
        anchors,
        data_keys,
        media: media_config,
    } = config;
    // refused before anything starts: the roles taking payments need an explicit gateway
    let gateway_kind = match roles {
        Roles::All | Roles::SagaRunner => Some(payments.gateway_kind()?),
        _ => None,
    };
    let pool = crate::cli::connect(stores).await?;
    let (shutdown, stop) = watch::channel(false);
    let metrics = read_health::install_recorder();
    let mut servers = tokio::task::JoinSet::new();
    let (mut command_api_addr, mut query_api_addr, mut ops_addr) = (None, None, None);
    // every role exports the read side's lag, its timers and its own connection pool
    {
        let (pool, stop) = (pool.clone(), stop.clone());
        servers.spawn(async move {
            read_health::watch_lag(pool, Duration::from_secs(5), stop).await;
            Ok(())
        });
    }
    // personal fields sealed with per-customer keys when a master key is configured
    let keyring = data_keys.keyring(&pool).await?;
    // product images: uploaded through the command API, served by the query API
    let images = match roles {
        Roles::All | Roles::CommandApi | Roles::QueryApi => media_config.store()?,
        _ => media::ImageStore::in_memory(),
    };
    let event_stores = Arc::new(match &keyring {
        Some(keyring) => schemas::stores::Stores::sealed(&pool, keyring.clone()),
        None => {
            tracing::warn!(
                "SHOP_DATA_KEY_MASTER is not set: personal data is stored in plaintext and \
                 cannot be erased"
            );
            schemas::stores::Stores::new(&pool)
        }
    });
    // one key for both APIs: the query API verifies the command API's tokens
    let jwt_secret = secrets.jwt_secret();

    if matches!(roles, Roles::All | Roles::Projector) {
        let pool = pool.clone();
        let stop = stop.clone();
        println!("projectors following the log");
        // on a blocking thread of its own: the projectors' future is not `Send` (sqlx executor
        // borrows across `dyn` projections hit a compiler limitation), and this keeps their batch
        // work off the request-serving threads anyway
        let runtime = tokio::runtime::Handle::current();
        let redis_url = stores.redis_url.to_string();
        let redis_stop = stop.clone();
        let redis_pool = pool.clone();
        servers.spawn(async move {
            follow_redis(&redis_url, &redis_pool, redis_stop).await;
            Ok(())
        });
        let from_kafka = match (kafka.event_source.as_str(), &kafka.kafka_brokers) {
            ("kafka", Some(brokers)) => Some(brokers.clone()),
            ("kafka", None) => {
                anyhow::bail!("SHOP_EVENT_SOURCE=kafka needs SHOP_KAFKA_BROKERS")
            }
            _ => None,
        };
        servers.spawn(async move {
            tokio::task::spawn_blocking(move || {
                runtime.block_on(async {
                    match from_kafka {
                        Some(brokers) => follow_kafka(&pool, &brokers, stop).await,
                        None => {
                            let all = projections::pg::all();
                            projections::pg::follow(&pool, &all, 1_000, stop)
                                .await
                                .map_err(anyhow::Error::from)
                        }
                    }
                })
            })
            .await
            .context("projector panicked")?
            .context("projector failed")
        });
    }

    let relay_runs =
        roles == Roles::Relay || (roles == Roles::All && kafka.kafka_brokers.is_some());
    if relay_runs {
        let Some(brokers) = &kafka.kafka_brokers else {
            anyhow::bail!("`shop relay` needs SHOP_KAFKA_BROKERS");
        };
        let config = relay::RelayConfig {
            partitions: kafka.kafka_partitions,
            ..relay::RelayConfig::new(brokers.clone())
        };
        let relay = relay::Relay::new(pool.clone(), config).context("cannot set up the relay")?;
        println!("relay publishing the log to Kafka at {brokers}");
        let stop = stop.clone();
        servers.spawn(async move { relay.run(stop).await.context("relay failed") });
    }

    if let (Roles::All, Some(dir)) = (roles, &anchors.audit_anchor_dir) {
        let key = anchors.key.required("SHOP_AUDIT_ANCHOR_DIR")?;
        let every = Duration::from_secs(anchors.audit_anchor_every_seconds);
        println!(
            "writing audit anchors to {} every {} s",
            dir.display(),
            every.as_secs()
        );
        let task = audit::anchor_periodically(pool.clone(), dir.clone(), key, every, stop.clone());
        servers.spawn(task);
    }

    let mut command_router: Option<Router> = None;
    if matches!(roles, Roles::All | Roles::CommandApi) {
        println!("product images in {}", images.description());
        let state = command_api::AppState::with_keyring(
            pool.clone(),
            &jwt_secret,
            command_api::ApiConfig {
                images: images.clone(),
                ..limits.api_config()
            },
            keyring.clone(),
        );
        let webhooks = sagas::webhooks::router(sagas::webhooks::WebhookState {
            pool: pool.clone(),
            stores: event_stores.clone(),
            secret: payments
                .stripe_webhook_secret
                .as_ref()
                .map(|s| Arc::from(s.0.as_str())),
            livemode: payments
                .stripe_secret_key
                .as_ref()
                .is_some_and(|key| key.0.starts_with("sk_live_") || key.0.starts_with("rk_live_")),
        });
        let listener = bind(listen.command_api_addr, "command API").await?;
        let addr = listener.local_addr()?;
        command_api_addr = Some(addr);
        println!("command API listening on http://{addr}");
        let router =
            telemetry::with_http_metrics(command_api::router(state).merge(webhooks), "command");
        // the front-end on the query API's listener reaches the commands at the same origin
        command_router = Some(router.clone());
        let mut router = router;
        if let Some(handle) = &metrics {
            router = router.merge(read_health::metrics_router(handle.clone()));
        }
        servers.spawn(serve(listener, router, stop.clone()));
    }

    if let Some(kind) = gateway_kind {
        let gateway = gateway(kind, payments, &pool)?;
        let config = sagas::checkout::CheckoutConfig {
            payment_timeout: Duration::from_secs(payments.payment_timeout_seconds),
            ..Default::default()
        };
        let saga =
            sagas::checkout::CheckoutSaga::new(pool.clone(), event_stores.clone(), gateway, config);
        let runner = sagas::runner::SagaRunner::new(pool.clone(), saga, Default::default());
        let stop_runner = stop.clone();
        match (kafka.event_source.as_str(), &kafka.kafka_brokers) {
            ("kafka", Some(brokers)) => {
                let source = relay::KafkaSource::connect(&relay::SourceConfig {
                    brokers: brokers.clone(),
                    group: "shop-saga-checkout".into(),
                    aggregate_types: schemas::AGGREGATE_TYPES
                        .iter()
                        .map(|t| (*t).to_owned())
                        .collect(),
                    poll: Duration::from_millis(200),
                })
                .await?;
                println!("checkout saga running on Kafka at {brokers}");
                servers.spawn(async move {
                    runner
                        .run_from(Box::new(source), stop_runner)
                        .await
                        .context("saga runner failed")
                });
            }
            ("kafka", None) => anyhow::bail!("SHOP_EVENT_SOURCE=kafka needs SHOP_KAFKA_BROKERS"),
            _ => {
                println!("checkout saga running");
                servers.spawn(async move {
                    runner.run(stop_runner).await.context("saga runner failed")
                });
            }
        }
        match &mail.smtp_url {
            Some(url) => {
                let notifier = sagas::notifier::Notifier::new(
                    pool.clone(),
                    sagas::notifier::NotifierConfig {
                        smtp_url: url.0.clone(),
                        from: mail.mail_from.clone(),
                        idle: Duration::from_millis(200),
                    },
                )
                .context("cannot set up notifications (SHOP_SMTP_URL)")?;
                println!("notifier sending through SMTP");
                let stop = stop.clone();
                servers.spawn(async move { notifier.run(stop).await.context("notifier failed") });
            }
            None => tracing::info!("no SHOP_SMTP_URL: customer notifications are off"),
        }
    }

    if matches!(roles, Roles::All | Roles::QueryApi) {
        let index = projections::search::SearchIndex::open(query.search_dir.as_deref())
            .context("cannot open the search index (SHOP_SEARCH_DIR)")?;
        let search_stop = stop.clone();
        let search_pool = pool.clone();
        let search_index = index.clone();
        servers.spawn(async move {
            query_api::follow_search(search_index, search_pool, search_stop).await;
            Ok(())
        });
        let redis = match projections::redis::RedisReadModels::connect(
            stores.redis_url.as_str(),
            projections::redis::PREFIX,
        )
        .await
        {
            Ok(redis) => Some(Arc::new(redis)),
            Err(error) => {
                tracing::warn!(%error, "Redis unavailable: carts are read from their events");
                None
            }
        };
        let config = query_api::QueryConfig {
            media_base_url: media_config.media_public_url.clone(),
            ..query.query_config()
        };
        let models = query_api::ReadModels {
            pool: pool.clone(),
            redis,
            search: index,
            consistency_wait: config.consistency_wait,
        };
        let keys = accounts::tokens::TokenKeys::new(
            &jwt_secret,
            command_api::ApiConfig::default().access_ttl,
        );
        let api = query_api::QueryApi::new(models, keys, config);
        let listener = bind(listen.query_api_addr, "query API").await?;
        let addr = listener.local_addr()?;
        query_api_addr = Some(addr);
        println!("query API listening on http://{addr}");
        let mut router = telemetry::with_http_metrics(
            query_api::router(api)
                .merge(read_health::health_router(
                    pool.clone(),
                    listen.ready_max_lag_seconds,
                ))
                .merge(media::http::router(images.clone())),
            "query",
        );
        if let Some(handle) = &metrics {
            router = router.merge(read_health::metrics_router(handle.clone()));
        }
        if let Some(dir) = &query.web_dir {
            println!(
                "storefront at http://{0}/ and console at http://{0}/console (from {1})",
                listener.local_addr()?,
                dir.display()
            );
            if let Some(commands) = command_router.take() {
                router = router.merge(same_origin_commands(commands));
            }
            router = router.merge(query_api::web_router(dir));
        }
        servers.spawn(serve(listener, router, stop.clone()));
    }

    if let Some(addr) = listen.ops_addr {
        let listener = bind(addr, "operations listener").await?;
        let addr = listener.local_addr()?;
        ops_addr = Some(addr);
        println!("operations listening on http://{addr}");
        let mut router = read_health::health_router(pool.clone(), listen.ready_max_lag_seconds);
        if let Some(handle) = &metrics {
            router = router.merge(read_health::metrics_router(handle.clone()));
        }
        servers.spawn(serve(
            listener,
            telemetry::with_http_metrics(router, "ops"),
            stop.clone(),
        ));
    }

    Ok(Started {
        command_api_addr,
        query_api_addr,
        ops_addr,
        pool,
        tasks: servers,
        shutdown: Shutdown(Arc::new(shutdown)),
        grace: Duration::from_secs(listen.shutdown_grace_seconds),
    })
}

/// Keeps the Redis read models current until `stop`; a Redis that is down is retried, never
/// fatal (the storefront falls back to PostgreSQL).
async fn follow_redis(url: &str, pool: &sqlx::PgPool, mut stop: watch::Receiver<bool>) {
    let mut models = None;
    while !*stop.borrow() {
        if models.is_none() {
            match projections::redis::RedisReadModels::connect(url, projections::redis::PREFIX)
                .await
            {
                Ok(connected) => models = Some(connected),
                Err(error) => tracing::warn!(%error, "Redis read models: cannot connect; retrying"),
            }
        }
        let applied = match &models {
            Some(models) => match models.follow(pool, 500).await {
                Ok(applied) => applied,
                Err(error) => {
                    tracing::warn!(%error, "Redis read models: batch failed; retrying");
                    0
                }
            },
            None => 0,
        };
        if applied == 0 {
            let _ = tokio::time::timeout(Duration::from_millis(200), stop.changed()).await;
        }
    }
}

/// The PostgreSQL read models fed from Kafka: one consumer group per projection, applied into
/// the live schema, deduplicated by event id.
async fn follow_kafka(
    pool: &sqlx::PgPool,
    brokers: &str,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut consumers = Vec::new();
    for projection in projections::pg::all() {
        let name = projection.name();
        let types: Vec<String> = projection
            .aggregate_types()
            .iter()
            .map(|t| (*t).to_owned())
            .collect();
        let schema = projections::pg::live_schema(projection.as_ref());
        let fed = relay::KafkaProjection::new(pool, projection, &schema, &format!("kafka:{name}"))
            .await?;
        let source = relay::KafkaSource::connect(&relay::SourceConfig {
            brokers: brokers.to_owned(),
            group: format!("shop-projector-{name}"),
            aggregate_types: types,
            poll: Duration::from_millis(200),
        })
        .await?;
        consumers.push((fed, source));
    }
    println!("projectors following Kafka at {brokers}");
    while !*stop.borrow() {
        for (fed, source) in &mut consumers {
            if let Err(error) = fed.step(pool, source, 1_000).await {
                tracing::warn!(%error, "Kafka projector: batch failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    Ok(())
}

/// The gateway SHOP_PAYMENT_GATEWAY chose (checked by `PaymentConfig::gateway_kind`).
fn gateway(
    kind: GatewayKind,
    payments: &PaymentConfig,
    pool: &sqlx::PgPool,
) -> anyhow::Result<Arc<dyn PaymentGateway>> {
    Ok(match (kind, &payments.stripe_secret_key) {
        (GatewayKind::Stripe, None) => {
            anyhow::bail!("SHOP_PAYMENT_GATEWAY=stripe needs SHOP_STRIPE_SECRET_KEY")
        }
        (GatewayKind::Stripe, Some(key)) => {
            let key = sagas::payments::stripe::StripeSecretKey::new(key.0.clone());
            let stripe = sagas::payments::stripe::StripeGateway::new(
                &key,
                payments.stripe_api_base.as_str(),
            )
            .context("cannot set up the Stripe gateway")?;
            tracing::info!(base = %payments.stripe_api_base, "payments through Stripe");
            Arc::new(stripe)
        }
        (GatewayKind::Local, _) => {
            tracing::info!("payments through the local gateway (SHOP_PAYMENT_GATEWAY=local)");
            // its intents live in PostgreSQL, as a real provider's live outside this process
            Arc::new(sagas::payments::local::LocalGateway::persistent(
                pool.clone(),
                Duration::from_millis(payments.local_slow_card_ms),
            ))
        }
    })
}

/// `/api/*` on the query API's listener, answered in process by the command API's router (as
/// the Ingress routes `/api` in a deployment): the browser app calls both APIs at its own
/// origin, with no CORS and no second port. Requests keep their connection info, so rate limits
/// still key on the client.
fn same_origin_commands(commands: Router) -> Router {
    let forward = move |request: axum::extract::Request| {
        let commands = commands.clone();
        async move {
            // the command API routes the request afresh: it gets the request without the outer
            // route's match and path parameters, keeping only the client's address
            let (parts, body) = request.into_parts();
            let mut forwarded = axum::extract::Request::new(body);
            *forwarded.method_mut() = parts.method;
            *forwarded.uri_mut() = parts.uri;
            *forwarded.version_mut() = parts.version;
            *forwarded.headers_mut() = parts.headers;
            if let Some(peer) = parts
                .extensions
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
            {
                forwarded.extensions_mut().insert(*peer);
            }
            tower::ServiceExt::oneshot(commands, forwarded).await
        }
    };
    Router::new()
        .route("/api", axum::routing::any(forward.clone()))
        .route("/api/{*rest}", axum::routing::any(forward))
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
