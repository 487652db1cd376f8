//! `/api/inventory/{sku}`: receiving and correcting stock, for staff.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use domain::{InventoryCommand, Quantity};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::products::parse_sku;
use super::{position_text, written};
use crate::context::RequestContext;
use crate::json::JsonBody;
use crate::AppState;
use accounts::Role;
use http_vocabulary::{ApiError, ApiResult};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/inventory/{sku}/receive", post(receive))
        .route("/api/inventory/{sku}/adjust", post(adjust))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiveBody {
    /// Units received, at least 1.
    pub quantity: i64,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustBody {
    /// Units to add (positive) or remove (negative); never below what is reserved.
    pub delta: i64,
    pub reason: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct StockWritten {
    pub sku: String,
    pub position: Option<String>,
}

pub fn parse_quantity(quantity: i64) -> ApiResult<Quantity> {
    u32::try_from(quantity)
        .ok()
        .and_then(|q| Quantity::new(q).ok())
        .ok_or_else(|| {
            ApiError::validation("quantity: must be a whole number from 1 to 4294967295")
        })
}

async fn ensure_product(state: &AppState, sku: &domain::Sku) -> ApiResult<()> {
    let product = state.stores.products.load(sku.as_str()).await?;
    if product.aggregate.details().is_none() {
        return Err(ApiError::not_found(format!("no product {sku}")));
    }
    Ok(())
}

async fn apply(
    state: &AppState,
    context: &RequestContext,
    sku: &domain::Sku,
    command: InventoryCommand,
) -> ApiResult<Response> {
    let receipt = state
        .stores
        .inventory
        .execute(sku.as_str(), command, &context.metadata())
        .await?;
    Ok(written(
        StatusCode::OK,
        receipt.position,
        StockWritten {
            sku: sku.to_string(),
            position: position_text(receipt.position),
        },
    ))
}

async fn receive(
    State(state): State<AppState>,
    context: RequestContext,
    Path(sku): Path<String>,
    JsonBody(body): JsonBody<ReceiveBody>,
) -> ApiResult<Response> {
    context.require(&[Role::Staff])?;
    let sku = parse_sku(&sku)?;
    let quantity = parse_quantity(body.quantity)?;
    ensure_product(&state, &sku).await?;
    let command = InventoryCommand::ReceiveStock {
        sku: sku.clone(),
        quantity,
    };
    apply(&state, &context, &sku, command).await
}

async fn adjust(
    State(state): State<AppState>,
    context: RequestContext,
    Path(sku): Path<String>,
    JsonBody(body): JsonBody<AdjustBody>,
) -> ApiResult<Response> {
    context.require(&[Role::Staff])?;
    let sku = parse_sku(&sku)?;
    ensure_product(&state, &sku).await?;
    let command = InventoryCommand::AdjustStock {
        delta: body.delta,
        reason: body.reason,
    };
    apply(&state, &context, &sku, command).await
}
