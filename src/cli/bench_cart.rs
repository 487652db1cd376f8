//! `shop bench cart`: the cart over REST at a constant arrival rate — each session creates a
//! guest cart, adds a line, changes its quantity and removes it (four requests) — against the
//! command API served in this process on the given database (after `shop seed`'s catalog).
//! Open loop: sessions start when due whatever the server's state; each request is timed from
//! when it was sent, each session from when it was due.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::load::Outcome;
use crate::config::StoreConfig;

const SKUS: &[&str] = &["HP-100", "HP-200", "SPK-10", "MIC-05", "KB-60", "MUG-01"];

pub async fn cart(
    stores: &StoreConfig,
    rate: u64,
    seconds: u64,
    max_error_rate: f64,
) -> anyhow::Result<ExitCode> {
    super::seed::run(stores).await?;
    let pool = super::connect(stores).await?;
    let config = command_api::ApiConfig {
        auth_per_minute: 1_000_000,
        checkout_per_minute: 1_000_000,
        ..command_api::ApiConfig::default()
    };
    let state = command_api::AppState::new(pool, &accounts::tokens::Secret::random(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move {
        let router = command_api::router(state);
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await;
    });

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(512)
        .build()?;
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    // (request latencies, session latencies, failed sessions)
    let results = Arc::new(Mutex::new((Vec::new(), Vec::new(), 0u64)));
    let bar = super::progress_bar(total, "cart sessions");
    let started = Instant::now();
    let mut sessions = tokio::task::JoinSet::new();
    for n in 0..total {
        let due = started + interval * n as u32;
        tokio::time::sleep_until(due.into()).await;
        let (client, base, results, bar) =
            (client.clone(), base.clone(), results.clone(), bar.clone());
        sessions.spawn(async move {
            let sku = SKUS[n as usize % SKUS.len()];
            let mut requests = Vec::with_capacity(4);
            let ok = session(&client, &base, sku, &mut requests).await;
            let mut results = results
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            results.0.extend(requests);
            if ok {
                results.1.push(due.elapsed().as_secs_f64() * 1_000.0);
            } else {
                results.2 += 1;
            }
            bar.inc(1);
        });
    }
    while sessions.join_next().await.is_some() {}
    bar.finish_and_clear();
    server.abort();
    let seconds = started.elapsed().as_secs_f64();
    let (requests, session_latencies, failed) = std::mem::take(
        &mut *results
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let sessions = Outcome {
        sent: total,
        errors: failed,
        latencies: session_latencies,
        seconds,
    };
    let request_outcome = Outcome {
        sent: requests.len() as u64 + failed,
        errors: failed,
        latencies: requests,
        seconds,
    };
    sessions.print("cart session", rate);
    request_outcome.print("cart request", rate * 4);
    Ok(sessions.exit_code(max_error_rate))
}

/// One session; the latency of each request that succeeded, in ms; false if any failed.
async fn session(
    client: &reqwest::Client,
    base: &str,
    sku: &str,
    latencies: &mut Vec<f64>,
) -> bool {
    let mut timed = |response: Result<reqwest::Response, reqwest::Error>, sent: Instant| {
        let ok = response.as_ref().is_ok_and(|r| r.status().is_success());
        if ok {
            latencies.push(sent.elapsed().as_secs_f64() * 1_000.0);
        }
        response.ok().filter(|_| ok)
    };
    let sent = Instant::now();
    let created = timed(
        client
            .post(format!("{base}/api/carts"))
            .json(&json!({}))
            .send()
            .await,
        sent,
    );
    let Some(created) = created else { return false };
    let Ok(body) = created.json::<serde_json::Value>().await else {
        return false;
    };
    let Some(cart) = body["cart_id"].as_str().map(str::to_owned) else {
        return false;
    };
    // the guest cart's secret, answered once: every later request sends it
    let Some(cart_token) = body["cart_token"].as_str().map(str::to_owned) else {
        return false;
    };
    let sent = Instant::now();
    let added = client
        .post(format!("{base}/api/carts/{cart}/items"))
        .header("cart-token", &cart_token)
        .json(&json!({"sku": sku, "quantity": 1}))
        .send()
        .await;
    if timed(added, sent).is_none() {
        return false;
    }
    let sent = Instant::now();
    let changed = client
        .patch(format!("{base}/api/carts/{cart}/items/{sku}"))
        .header("cart-token", &cart_token)
        .json(&json!({"quantity": 3}))
        .send()
        .await;
    if timed(changed, sent).is_none() {
        return false;
    }
    let sent = Instant::now();
    let removed = client
        .delete(format!("{base}/api/carts/{cart}/items/{sku}"))
        .header("cart-token", &cart_token)
        .send()
        .await;
    timed(removed, sent).is_some()
}
