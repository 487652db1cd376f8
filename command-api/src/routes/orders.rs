//! `/api/orders/{id}`: cancelling (the customer who placed it, or staff), and the staff's
//! shipping, delivery and refunds.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use domain::order::CancelledBy;
use domain::{CustomerId, Money, Order, OrderCommand, RefundId};
use eventlog::store::Refusal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::products::NoFields;
use super::{position_text, written, OptionalJsonBody};
use crate::context::RequestContext;
use crate::json::JsonBody;
use crate::AppState;
use accounts::{cart_tokens, Role};
use http_vocabulary::{ApiError, ApiResult};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/orders/{id}/cancel", post(cancel))
        .route("/api/orders/{id}/ship", post(ship))
        .route("/api/orders/{id}/deliver", post(deliver))
        .route("/api/orders/{id}/refund", post(refund))
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    pub reason: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipBody {
    pub tracking: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    /// In the order's currency, minor units; at most what is left unrefunded.
    pub amount_minor: i64,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct OrderWritten {
    pub order_id: Uuid,
    pub position: Option<String>,
}

/// The order exists (for anyone allowed to see it at all).
fn exists(order: &Order) -> Result<(), Refusal> {
    order.placed().map(|_| ()).ok_or(Refusal::NotFound)
}

async fn run(
    state: &AppState,
    context: &RequestContext,
    order_id: Uuid,
    command: OrderCommand,
    precondition: impl Fn(&Order) -> Result<(), Refusal>,
) -> ApiResult<Response> {
    let receipt = state
        .stores
        .orders
        .execute_if(
            &order_id.to_string(),
            command,
            &context.metadata(),
            precondition,
        )
        .await?;
    Ok(written(
        StatusCode::OK,
        receipt.position,
        OrderWritten {
            order_id,
            position: position_text(receipt.position),
        },
    ))
}

async fn cancel(
    State(state): State<AppState>,
    context: RequestContext,
    Path(order_id): Path<Uuid>,
    OptionalJsonBody(body): OptionalJsonBody<CancelBody>,
) -> ApiResult<Response> {
    let by = match context.role() {
        Some(Role::Staff) => CancelledBy::Staff,
        Some(Role::Auditor) => return Err(ApiError::forbidden("auditors change nothing")),
        Some(Role::Customer) | None => CancelledBy::Customer,
    };
    let caller = context.account().map(CustomerId::new);
    // a guest order is its guest cart's: the caller must hold that cart's secret (the cart id is
    // read first; the precondition then checks the order still names that cart)
    let held_cart = match &context.cart_token {
        Some(token) if by == CancelledBy::Customer => {
            let order = state.stores.orders.load(&order_id.to_string()).await?;
            match order.aggregate.placed().map(|placed| placed.cart_id) {
                Some(cart_id)
                    if cart_tokens::holds(&state.pool, cart_id.as_uuid(), token).await? =>
                {
                    Some(cart_id)
                }
                _ => None,
            }
        }
        _ => None,
    };
    let owner_or_staff = move |order: &Order| {
        let placed = order.placed().ok_or(Refusal::NotFound)?;
        match (by, placed.customer) {
            (CancelledBy::Staff, _) => Ok(()),
            (_, None) if held_cart == Some(placed.cart_id) => Ok(()),
            (_, Some(owner)) if Some(owner) == caller => Ok(()),
            // someone else's order (or a guest order without its cart's secret) is not even
            // acknowledged to exist
            _ => Err(Refusal::NotFound),
        }
    };
    let command = OrderCommand::Cancel {
        reason: body
            .reason
            .unwrap_or_else(|| "cancelled at the customer's request".to_owned()),
        by,
        at: chrono::Utc::now(),
    };
    run(&state, &context, order_id, command, owner_or_staff).await
}

async fn ship(
    State(state): State<AppState>,
    context: RequestContext,
    Path(order_id): Path<Uuid>,
    OptionalJsonBody(body): OptionalJsonBody<ShipBody>,
) -> ApiResult<Response> {
    context.require(&[Role::Staff])?;
    let command = OrderCommand::Ship {
        tracking: body.tracking,
        at: chrono::Utc::now(),
    };
    run(&state, &context, order_id, command, exists).await
}

async fn deliver(
    State(state): State<AppState>,
    context: RequestContext,
    Path(order_id): Path<Uuid>,
    OptionalJsonBody(NoFields {}): OptionalJsonBody<NoFields>,
) -> ApiResult<Response> {
    context.require(&[Role::Staff])?;
    let command = OrderCommand::Deliver {
        at: chrono::Utc::now(),
    };
    run(&state, &context, order_id, command, exists).await
}

async fn refund(
    State(state): State<AppState>,
    context: RequestContext,
    Path(order_id): Path<Uuid>,
    JsonBody(body): JsonBody<RefundBody>,
) -> ApiResult<Response> {
    context.require(&[Role::Staff])?;
    let order = state
        .stores
        .orders
        .load(&order_id.to_string())
        .await?
        .aggregate;
    let currency = order
        .placed()
        .map(|placed| placed.currency)
        .ok_or_else(|| ApiError::not_found("no such order"))?;
    let command = OrderCommand::Refund {
        refund_id: RefundId::new(context.new_id("refund")),
        amount: Money::new(body.amount_minor, currency),
        reason: body.reason.unwrap_or_else(|| "refund".to_owned()),
        at: chrono::Utc::now(),
    };
    run(&state, &context, order_id, command, exists).await
}
