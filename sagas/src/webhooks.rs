//! `POST /webhooks/stripe`: Stripe's payment events, verified (`Stripe-Signature`, HMAC-SHA256
//! over `t.payload`, 300 s tolerance, any of several `v1` signatures), deduplicated by Stripe's
//! event id, and turned into Payment commands. Late, repeated or out-of-order events end in the
//! right state: the Payment aggregate treats a repeated or superseded provider event as a no-op,
//! and a `succeeded` that arrives before `amount_capturable_updated` authorizes, then captures.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use domain::derived_ids::payment_id_of_order;
use domain::payment::PaymentStatus;
use domain::{Money, OrderId, PaymentCommand};
use eventlog::store::ExecuteError;
use eventlog::{Actor, EventMetadata};
use http_vocabulary::{ApiError, ApiResult, ErrorCode};
use schemas::stores::Stores;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::payments::webhook::{
    self, StripeEvent, StripeEventKind, SIGNATURE_HEADER, TOLERANCE_SECS,
};

/// What the webhook route needs.
#[derive(Clone)]
pub struct WebhookState {
    pub pool: PgPool,
    pub stores: Arc<Stores>,
    /// The endpoint's signing secret (`whsec_...`); without it, webhooks are refused.
    pub secret: Option<Arc<str>>,
    /// Whether this shop takes real money (a live secret key): events of the other mode are
    /// acknowledged and ignored (a test-mode event must never move a live payment).
    pub livemode: bool,
}

/// `POST /webhooks/stripe`, in a request span; errors are the APIs' problem+json.
pub fn router(state: WebhookState) -> Router {
    http_vocabulary::with_request_span(
        Router::new()
            .route("/webhooks/stripe", post(receive))
            .with_state(state),
    )
}

async fn receive(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    payload: Bytes,
) -> ApiResult<Json<Value>> {
    let Some(secret) = &state.secret else {
        return Err(ApiError::new(
            ErrorCode::ServiceUnavailable,
            "Stripe webhooks are not configured (SHOP_STRIPE_WEBHOOK_SECRET)",
        ));
    };
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if let Err(error) = webhook::verify(
        &payload,
        signature,
        secret,
        Utc::now().timestamp(),
        TOLERANCE_SECS,
    ) {
        tracing::warn!(%error, "refused a Stripe webhook");
        return Err(ApiError::validation(format!("webhook refused: {error}")));
    }
    let event = webhook::parse_event(&payload)
        .map_err(|error| ApiError::new(ErrorCode::MalformedRequest, error.to_string()))?;
    match handle(&state, &event).await {
        Ok(outcome) => Ok(Json(json!({"received": true, "outcome": outcome}))),
        Err(WebhookFailure::Unavailable(error)) => {
            tracing::warn!(event_id = %event.id, %error, "Stripe webhook not applied now; Stripe will retry");
            Err(ApiError::new(
                ErrorCode::ServiceUnavailable,
                "the database is unavailable; retry",
            )
            .with_retry_after(1))
        }
        Err(error) => Err(ApiError::internal(format_args!(
            "Stripe webhook {} not applied (Stripe will retry): {error}",
            event.id
        ))),
    }
}

#[derive(Debug, thiserror::Error)]
enum WebhookFailure {
    /// The database cannot be used now (answered 503: Stripe retries).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database: {0}")]
    Database(sqlx::Error),
    #[error("event store: {0}")]
    Store(String),
}

impl From<sqlx::Error> for WebhookFailure {
    fn from(error: sqlx::Error) -> Self {
        if eventlog::error::is_unavailable(&error) {
            WebhookFailure::Unavailable(error.to_string())
        } else {
            WebhookFailure::Database(error)
        }
    }
}

impl<E: std::error::Error> From<ExecuteError<E>> for WebhookFailure {
    fn from(error: ExecuteError<E>) -> Self {
        match error {
            ExecuteError::Store(store) => store.into(),
            other => WebhookFailure::Store(other.to_string()),
        }
    }
}

impl From<eventlog::Error> for WebhookFailure {
    fn from(error: eventlog::Error) -> Self {
        match error {
            eventlog::Error::Database(db) => db.into(),
            other => WebhookFailure::Store(other.to_string()),
        }
    }
}

/// Applies one verified event; the returned word says what happened (for logs and tests).
async fn handle(state: &WebhookState, event: &StripeEvent) -> Result<&'static str, WebhookFailure> {
    let seen: Option<String> = sqlx::query_scalar("SELECT id FROM stripe_events WHERE id = $1")
        .bind(&event.id)
        .fetch_optional(&state.pool)
        .await?;
    if seen.is_some() {
        return Ok("duplicate");
    }
    if event.livemode != state.livemode {
        tracing::warn!(event_id = %event.id, livemode = event.livemode, "Stripe event of the other mode; ignored");
        remember(state, event).await?;
        return Ok("other mode");
    }
    let Some(order_id) = event.order_id().map(OrderId::new) else {
        remember(state, event).await?;
        return Ok("ignored");
    };
    let payment_id = payment_id_of_order(order_id).to_string();
    let payments = &state.stores.payments;
    let payment = payments.load(&payment_id).await?.aggregate;
    let Some(details) = payment.details() else {
        remember(state, event).await?;
        return Ok("unknown payment");
    };
    // the intent must be the one the payment knows (metadata can be copied onto another)
    if let Some(known) = &details.provider_ref {
        if known != &event.object.id {
            tracing::warn!(event_id = %event.id, intent = %event.object.id, %known, "Stripe event for another PaymentIntent than the payment's; ignored");
            remember(state, event).await?;
            return Ok("other intent");
        }
    }
    let currency = details.amount.currency;
    let metadata = |step: &str| {
        let mut metadata = EventMetadata::new(Actor::system("webhook:stripe"));
        metadata.command_id = format!("stripe:{}:{step}", event.id);
        metadata.causation_id = Some(format!("stripe:{}", event.id));
        metadata
    };
    let at = Utc::now();
    let authorize = PaymentCommand::Authorize {
        provider_ref: event.object.id.clone(),
        at,
    };
    let mut commands = Vec::new();
    match event.kind() {
        StripeEventKind::AmountCapturableUpdated => commands.push(("authorize", authorize)),
        StripeEventKind::Succeeded => {
            // succeeded may overtake amount_capturable_updated: authorize first
            if payment.status() == Some(PaymentStatus::Requested) {
                commands.push(("authorize", authorize));
            }
            let amount = event
                .object
                .amount_received
                .or(event.object.amount)
                .unwrap_or(details.amount.amount_minor);
            commands.push((
                "capture",
                PaymentCommand::Capture {
                    amount: Money::new(amount, currency),
                    at,
                },
            ));
        }
        StripeEventKind::PaymentFailed => commands.push((
            "fail",
            PaymentCommand::Fail {
                reason: event
                    .object
                    .last_payment_error
                    .clone()
                    .unwrap_or_else(|| "the payment failed".to_owned()),
                at,
            },
        )),
        StripeEventKind::Canceled => commands.push(("cancel", PaymentCommand::Cancel { at })),
        StripeEventKind::ChargeRefunded | StripeEventKind::Other => {}
    }
    let mut outcome = if commands.is_empty() {
        "ignored"
    } else {
        "applied"
    };
    for (step, command) in commands {
        match payments
            .execute(&payment_id, command, &metadata(step))
            .await
        {
            Ok(_) => {}
            // an event the payment's state has moved past: nothing to do
            Err(ExecuteError::Domain(error)) => {
                tracing::info!(event_id = %event.id, %error, "Stripe event does not apply to the payment's state");
                outcome = "no-op";
            }
            Err(other) => return Err(other.into()),
        }
    }
    remember(state, event).await?;
    Ok(outcome)
}

async fn remember(state: &WebhookState, event: &StripeEvent) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO stripe_events (id, event_type) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&event.id)
    .bind(&event.event_type)
    .execute(&state.pool)
    .await?;
    Ok(())
}
