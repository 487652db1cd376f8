//! `/api/products`: the catalog, for staff.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{patch, post, put};
use axum::Router;
use domain::{Currency, Money, ProductCommand, Sku};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{position_text, written, MoneyBody, OptionalJsonBody};
use crate::context::RequestContext;
use crate::json::JsonBody;
use crate::AppState;
use accounts::Role;
use http_vocabulary::{ApiError, ApiResult};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/products", post(create))
        .route("/api/products/{sku}", patch(revise))
        .route("/api/products/{sku}/discontinue", post(discontinue))
        .route(
            "/api/products/{sku}/prices/{currency}",
            put(set_price).delete(remove_price),
        )
}

/// A price in the currency the path names.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPriceBody {
    /// In minor units (cents) of the path's currency; positive.
    pub amount_minor: i64,
}

pub fn parse_currency(text: &str) -> ApiResult<Currency> {
    Currency::parse(text).map_err(|e| ApiError::validation(format!("currency: {e}")))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProductBody {
    /// 1 to 64 of `A-Z 0-9 - _`.
    pub sku: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub category: String,
    pub price: MoneyBody,
}

/// Fields to change; at least one.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviseProductBody {
    pub name: Option<String>,
    pub description: Option<String>,
    pub category: Option<String>,
    pub price: Option<MoneyBody>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ProductWritten {
    pub sku: String,
    pub position: Option<String>,
}

pub fn parse_sku(text: &str) -> ApiResult<Sku> {
    Sku::parse(text).map_err(|e| ApiError::validation(format!("sku: {e}")))
}

async fn create(
    State(state): State<AppState>,
    context: RequestContext,
    JsonBody(body): JsonBody<CreateProductBody>,
) -> ApiResult<Response> {
    context.require(&[Role::Staff])?;
    let sku = parse_sku(&body.sku)?;
    let command = ProductCommand::Create {
        sku: sku.clone(),
        name: body.name,
        description: body.description,
        category: body.category,
        price: body.price.parse("price")?,
        created_at: chrono::Utc::now(),
    };
    let receipt = state
        .stores
        .products
        .execute(sku.as_str(), command, &context.metadata())
        .await?;
    let mut response = written(
        StatusCode::CREATED,
        receipt.position,
        ProductWritten {
            sku: sku.to_string(),
            position: position_text(receipt.position),
        },
    );
    if let Ok(location) = format!("/api/products/{sku}").parse() {
        response.headers_mut().insert("location", location);
    }
    Ok(response)
}

async fn revise(
    State(state): State<AppState>,
    context: RequestContext,
    Path(sku): Path<String>,
    JsonBody(body): JsonBody<ReviseProductBody>,
) -> ApiResult<Response> {
    context.require(&[Role::Staff])?;
    let sku = parse_sku(&sku)?;
    let command = ProductCommand::Revise {
        name: body.name,
        description: body.description,
        category: body.category,
        price: body.price.map(|p| p.parse("price")).transpose()?,
    };
    let receipt = state
        .stores
        .products
        .execute(sku.as_str(), command, &context.metadata())
        .await?;
    Ok(written(
        StatusCode::OK,
        receipt.position,
        ProductWritten {
            sku: sku.to_string(),
            position: position_text(receipt.position),
        },
    ))
}

/// Takes no fields; an empty JSON object is accepted too.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

async fn discontinue(
    State(state): State<AppState>,
    context: RequestContext,
    Path(sku): Path<String>,
    OptionalJsonBody(NoFields {}): OptionalJsonBody<NoFields>,
) -> ApiResult<Response> {
    context.require(&[Role::Staff])?;
    let sku = parse_sku(&sku)?;
    let command = ProductCommand::Discontinue {
        at: chrono::Utc::now(),
    };
    let receipt = state
        .stores
        .products
        .execute(sku.as_str(), command, &context.metadata())
        .await?;
    Ok(written(
        StatusCode::OK,
        receipt.position,
        ProductWritten {
            sku: sku.to_string(),
            position: position_text(receipt.position),
        },
    ))
}

/// Sets the price in one currency: the base price when it is the product's base currency,
/// else that currency's entry in the price list (a cart in that currency is priced by it).
async fn set_price(
    State(state): State<AppState>,
    context: RequestContext,
    Path((sku, currency)): Path<(String, String)>,
    JsonBody(body): JsonBody<SetPriceBody>,
) -> ApiResult<Response> {
    context.require(&[Role::Staff])?;
    let sku = parse_sku(&sku)?;
    let price = Money::new(body.amount_minor, parse_currency(&currency)?);
    let receipt = state
        .stores
        .products
        .execute(
            sku.as_str(),
            ProductCommand::SetPrice { price },
            &context.metadata(),
        )
        .await?;
    Ok(written(
        StatusCode::OK,
        receipt.position,
        ProductWritten {
            sku: sku.to_string(),
            position: position_text(receipt.position),
        },
    ))
}

/// Removes the price in one currency (not the base price's).
async fn remove_price(
    State(state): State<AppState>,
    context: RequestContext,
    Path((sku, currency)): Path<(String, String)>,
) -> ApiResult<Response> {
    context.require(&[Role::Staff])?;
    let sku = parse_sku(&sku)?;
    let currency = parse_currency(&currency)?;
    let receipt = state
        .stores
        .products
        .execute(
            sku.as_str(),
            ProductCommand::RemovePrice { currency },
            &context.metadata(),
        )
        .await?;
    Ok(written(
        StatusCode::OK,
        receipt.position,
        ProductWritten {
            sku: sku.to_string(),
            position: position_text(receipt.position),
        },
    ))
}
