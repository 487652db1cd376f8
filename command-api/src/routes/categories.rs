//! `/api/categories` and `/api/featured-products`: the catalog's structure, for staff. One
//! stream holds the whole tree and the featured list (`domain::catalog`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{patch, post, put};
use axum::Router;
use domain::catalog::CATALOG_STREAM;
use domain::{CatalogCommand, Sku};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{position_text, written};
use crate::context::RequestContext;
use crate::json::JsonBody;
use crate::AppState;
use accounts::Role;
use http_vocabulary::{ApiError, ApiResult};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/categories", post(create))
        .route("/api/categories/{slug}", patch(rename))
        .route("/api/categories/{slug}/move", post(move_category))
        .route("/api/featured-products", put(set_featured))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCategoryBody {
    /// 1 to 64 of `a-z 0-9` in words joined by single hyphens, e.g. `coffee-mugs`; a product
    /// is in the category whose slug its `category` is.
    pub slug: String,
    pub name: String,
    /// The parent category's slug; absent or null: a root.
    #[serde(default)]
    pub parent: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameCategoryBody {
    pub name: String,
}

/// Where the category (with its subcategories) goes.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveCategoryBody {
    /// The new parent's slug; null: to the roots. Never the category itself or one inside it.
    pub parent: Option<String>,
}

/// The featured products, in order; replaces the list (empty clears it).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeaturedProductsBody {
    /// At most 50 distinct SKUs of existing products.
    pub skus: Vec<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CategoryWritten {
    pub slug: String,
    pub position: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FeaturedWritten {
    pub skus: Vec<String>,
    pub position: Option<String>,
}

async fn execute(
    state: &AppState,
    context: &RequestContext,
    command: CatalogCommand,
) -> ApiResult<Option<eventlog::LogPosition>> {
    let receipt = state
        .stores
        .catalog
        .execute(CATALOG_STREAM, command, &context.metadata())
        .await?;
    Ok(receipt.position)
}

async fn create(
    State(state): State<AppState>,
    context: RequestContext,
    JsonBody(body): JsonBody<CreateCategoryBody>,
) -> ApiResult<Response> {
    context.require(&[Role::Staff])?;
    let slug = body.slug.clone();
    let command = CatalogCommand::CreateCategory {
        slug: body.slug,
        name: body.name,
        parent: body.parent,
    };
    let position = execute(&state, &context, command).await?;
    let mut response = written(
        StatusCode::CREATED,
        position,
        CategoryWritten {
            position: position_text(position),
            slug: slug.clone(),
        },
    );
    if let Ok(location) = format!("/api/categories/{slug}").parse() {
        response.headers_mut().insert("location", location);
    }
    Ok(response)
}

async fn rename(
    State(state): State<AppState>,
    context: RequestContext,
    Path(slug): Path<String>,
    JsonBody(body): JsonBody<RenameCategoryBody>,
) -> ApiResult<Response> {
    context.require(&[Role::Staff])?;
    let command = CatalogCommand::RenameCategory {
        slug: slug.clone(),
        name: body.name,
    };
    let position = execute(&state, &context, command).await?;
    Ok(written(
        StatusCode::OK,
        position,
        CategoryWritten {
            slug,
            position: position_text(position),
        },
    ))
}

async fn move_category(
    State(state): State<AppState>,
    context: RequestContext,
    Path(slug): Path<String>,
    JsonBody(body): JsonBody<MoveCategoryBody>,
) -> ApiResult<Response> {
    context.require(&[Role::Staff])?;
    let command = CatalogCommand::MoveCategory {
        slug: slug.clone(),
        parent: body.parent,
    };
    let position = execute(&state, &context, command).await?;
    Ok(written(
        StatusCode::OK,
        position,
        CategoryWritten {
            slug,
            position: position_text(position),
        },
    ))
}

async fn set_featured(
    State(state): State<AppState>,
    context: RequestContext,
    JsonBody(body): JsonBody<FeaturedProductsBody>,
) -> ApiResult<Response> {
    context.require(&[Role::Staff])?;
    let mut skus = Vec::with_capacity(body.skus.len());
    for (i, text) in body.skus.iter().enumerate() {
        let sku = Sku::parse(text.as_str())
            .map_err(|e| ApiError::validation(format!("skus[{i}]: {e}")))?;
        let product = state.stores.products.load(sku.as_str()).await?.aggregate;
        if product.details().is_none() {
            return Err(ApiError::validation(format!("skus[{i}]: no product {sku}")));
        }
        skus.push(sku);
    }
    let listed: Vec<String> = skus.iter().map(ToString::to_string).collect();
    let position = execute(
        &state,
        &context,
        CatalogCommand::SetFeaturedProducts { skus },
    )
    .await?;
    Ok(written(
        StatusCode::OK,
        position,
        FeaturedWritten {
            skus: listed,
            position: position_text(position),
        },
    ))
}
