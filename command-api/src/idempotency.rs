//! `Idempotency-Key` on POST: the first response to a key is kept, and a retry with the same key
//! and the same request gets it back without running the command again; the same key with a
//! different request is a 422. A key whose first request is still running answers 409 with
//! Retry-After. If a process dies mid-request, the key's lease expires and a retry runs the
//! command again — which the event store recognises by its command id (derived from the key)
//! and does not apply twice.
//!
//! Never kept: the responses of `/api/auth/*` (they hold access and refresh tokens, and a
//! replayed refresh would hand out tokens again without the reuse detection seeing the second
//! use). Keys expire after [`crate::ApiConfig::idempotency_ttl`] (a day): an older key runs its
//! request again, and each process purges expired keys at most once a minute.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};

use crate::context::RequestContext;
use crate::{body_limit, AppState};
use http_vocabulary::POSITION_HEADER;
use http_vocabulary::{ApiError, ErrorCode};

/// How long a request holds its key before a retry may take it over.
const LEASE_SECONDS: i64 = 30;

/// Response headers kept with the response.
const KEPT_HEADERS: &[&str] = &["content-type", "location", POSITION_HEADER, "retry-after"];

/// Routes whose responses are never kept: they hold secrets (tokens).
const NEVER_KEPT: &[&str] = &["/api/auth/"];

/// Seconds between two purges of expired keys by one process.
const PURGE_EVERY_SECONDS: u64 = 60;

/// Whether the Idempotency-Key layer keeps the responses of `path`.
pub fn keeps(path: &str) -> bool {
    !NEVER_KEPT.iter().any(|prefix| path.starts_with(prefix))
}

/// Deletes the keys older than `ttl`; returns how many.
pub async fn purge_expired(pool: &PgPool, ttl: Duration) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
    )
    .bind(ttl.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected())
}

/// Starts a purge in the background unless this process ran one in the last minute.
fn purge_now_and_then(state: &AppState) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = state.idempotency_purged_at.load(Ordering::Relaxed);
    if now < last + PURGE_EVERY_SECONDS
        || state
            .idempotency_purged_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let (pool, ttl) = (state.pool.clone(), state.config.idempotency_ttl);
    tokio::spawn(async move {
        match purge_expired(&pool, ttl).await {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!(deleted, "expired idempotency keys purged"),
            Err(error) => tracing::warn!(%error, "cannot purge expired idempotency keys"),
        }
    });
}

enum Claim {
    /// First use of the key (or a retry taking over an abandoned one): run the request.
    Run,
    Replay(Response),
    Mismatch,
    InProgress,
}

pub async fn middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST || !keeps(request.uri().path()) {
        return next.run(request).await;
    }
    let Some(context) = request.extensions().get::<RequestContext>().cloned() else {
        return next.run(request).await;
    };
    let Some(key) = context.idempotency_key.clone() else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, body_limit(parts.uri.path())).await else {
        return ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
            .into_response();
    };
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str());
    hasher.update([0]);
    hasher.update(parts.uri.path());
    hasher.update([0]);
    hasher.update(&bytes);
    let request_hash = hasher.finalize().to_vec();
    let scope = context.idempotency_scope();
    purge_now_and_then(&state);

    match claim(&state, &scope, &key, &request_hash).await {
        Err(error) => error.into_response(),
        Ok(Claim::Replay(response)) => response,
        Ok(Claim::Mismatch) => ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was used for a different request",
        )
        .into_response(),
        Ok(Claim::InProgress) => ApiError::new(
            ErrorCode::RequestInProgress,
            "a request with this Idempotency-Key is still being processed",
        )
        .with_retry_after(1)
        .into_response(),
        Ok(Claim::Run) => {
            let response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            match remember(&state, &scope, &key, response).await {
                Ok(response) => response,
                Err(error) => error.into_response(),
            }
        }
    }
}

async fn claim(state: &AppState, scope: &str, key: &str, hash: &[u8]) -> Result<Claim, ApiError> {
    // a new key, or one that expired (whatever it kept is forgotten: the request runs again)
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, request_hash, locked_until)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))
         ON CONFLICT (scope, key) DO UPDATE
            SET request_hash = EXCLUDED.request_hash, status = NULL, headers = NULL,
                body = NULL, locked_until = EXCLUDED.locked_until, created_at = now()
          WHERE idempotency_keys.created_at < now() - make_interval(secs => $5)",
    )
    .bind(scope)
    .bind(key)
    .bind(hash)
    .bind(LEASE_SECONDS as f64)
    .bind(state.config.idempotency_ttl.as_secs_f64())
    .execute(&state.pool)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Claim::Run);
    }
    let row = sqlx::query(
        "SELECT request_hash, status, headers, body, locked_until < now() AS abandoned
           FROM idempotency_keys WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_optional(&state.pool)
    .await?;
    let Some(row) = row else {
        // released between our insert and select: try once more as new
        return Ok(Claim::InProgress);
    };
    if row.get::<Vec<u8>, _>("request_hash") != hash {
        return Ok(Claim::Mismatch);
    }
    if let Some(status) = row.get::<Option<i16>, _>("status") {
        return Ok(Claim::Replay(replay(
            status,
            row.get("headers"),
            row.get::<Option<Vec<u8>>, _>("body").unwrap_or_default(),
        )));
    }
    if row.get::<bool, _>("abandoned") {
        let taken = sqlx::query(
            "UPDATE idempotency_keys SET locked_until = now() + make_interval(secs => $3)
              WHERE scope = $1 AND key = $2 AND status IS NULL AND locked_until < now()",
        )
        .bind(scope)
        .bind(key)
        .bind(LEASE_SECONDS as f64)
        .execute(&state.pool)
        .await?;
        if taken.rows_affected() == 1 {
            return Ok(Claim::Run);
        }
    }
    Ok(Claim::InProgress)
}

fn replay(status: i16, headers: Option<serde_json::Value>, body: Vec<u8>) -> Response {
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut response = (status, body).into_response();
    if let Some(serde_json::Value::Object(kept)) = headers {
        for (name, value) in kept {
            if let (Ok(name), Some(Ok(value))) = (
                HeaderName::try_from(name.as_str()),
                value.as_str().map(HeaderValue::from_str),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// Keeps a final response for the key; releases the key after a transient failure (5xx, 409,
/// 429) so a retry runs again.
async fn remember(
    state: &AppState,
    scope: &str,
    key: &str,
    response: Response,
) -> Result<Response, ApiError> {
    let status = response.status();
    let transient = status.is_server_error()
        || status == StatusCode::CONFLICT
        || status == StatusCode::TOO_MANY_REQUESTS;
    if transient {
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL",
        )
        .bind(scope)
        .bind(key)
        .execute(&state.pool)
        .await?;
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, 1024 * 1024)
        .await
        .map_err(ApiError::internal)?;
    let kept = kept_headers(&parts.headers);
    sqlx::query(
        "UPDATE idempotency_keys SET status = $3, headers = $4, body = $5
          WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(key)
    .bind(status.as_u16() as i16)
    .bind(kept)
    .bind(bytes.to_vec())
    .execute(&state.pool)
    .await?;
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

fn kept_headers(headers: &HeaderMap) -> serde_json::Value {
    let mut kept = serde_json::Map::new();
    for name in KEPT_HEADERS {
        if let Some(value) = headers.get(*name).and_then(|v| v.to_str().ok()) {
            kept.insert((*name).to_owned(), value.into());
        }
    }
    serde_json::Value::Object(kept)
}
