//! `/api/products`: the catalog, for staff; and its images (`/api/products/{sku}/images`).

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, patch, post, put};
use axum::Router;
use domain::product::{OptionValues, ProductOption};
use domain::{Currency, ImageId, Money, ProductCommand, ProductError, ProductImage, Sku};
use media::store::StoreUploadError;
use media::UploadError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{position_text, written, MoneyBody, OptionalJsonBody};
use crate::context::RequestContext;
use crate::json::JsonBody;
use crate::AppState;
use accounts::Role;
use http_vocabulary::{ApiError, ApiResult, ErrorCode};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/products", post(create))
        .route("/api/products/{sku}", patch(revise))
        .route("/api/products/{sku}/discontinue", post(discontinue))
        .route(
            "/api/products/{sku}/prices/{currency}",
            put(set_price).delete(remove_price),
        )
        .route("/api/products/{sku}/options", put(declare_options))
        .route("/api/products/{sku}/variants", post(add_variant))
        .route(
            "/api/products/{sku}/images",
            post(add_image).layer(DefaultBodyLimit::max(media::MAX_UPLOAD_BYTES + 1)),
        )
        .route(
            "/api/products/{sku}/images/{image_id}",
            delete(remove_image),
        )
}

/// Whether `path` is the image upload route (`/api/products/{sku}/images`), whose bodies may be
/// up to an image's size.
pub fn is_image_upload(path: &str) -> bool {
    path.strip_prefix("/api/products/")
        .and_then(|rest| rest.strip_suffix("/images"))
        .is_some_and(|sku| !sku.is_empty() && !sku.contains('/'))
}

/// An option the product's variants choose from.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptionBody {
    /// e.g. `size`; 1 to 50 characters.
    pub name: String,
    /// e.g. `["S", "M", "L"]`, in display order; 1 to 50 distinct values.
    pub values: Vec<String>,
}

/// Every option of the product (1 to 5); fixed once it has a variant.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclareOptionsBody {
    pub options: Vec<OptionBody>,
}

/// A variant: its own SKU, one value of every option of the product.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddVariantBody {
    /// The variant's own SKU (its own stock and prices): 1 to 64 of `A-Z 0-9 - _`.
    pub sku: String,
    /// Option name → value, e.g. `{"size": "M", "colour": "red"}`.
    pub option_values: OptionValues,
    /// When absent: the product's name and the values, e.g. `T-shirt (M / red)`.
    pub name: Option<String>,
    /// The variant's base price; when absent, the product's prices (every currency).
    pub price: Option<MoneyBody>,
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

async fn declare_options(
    State(state): State<AppState>,
    context: RequestContext,
    Path(sku): Path<String>,
    JsonBody(body): JsonBody<DeclareOptionsBody>,
) -> ApiResult<Response> {
    context.require(&[Role::Staff])?;
    let sku = parse_sku(&sku)?;
    let options = body
        .options
        .into_iter()
        .map(|option| ProductOption {
            name: option.name,
            values: option.values,
        })
        .collect();
    let receipt = state
        .stores
        .products
        .execute(
            sku.as_str(),
            ProductCommand::DeclareOptions { options },
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

/// Adds a variant to the product (its parent), then creates the variant as a product of its
/// own. Both steps are idempotent, so a retry after a failure between them completes it.
async fn add_variant(
    State(state): State<AppState>,
    context: RequestContext,
    Path(parent): Path<String>,
    JsonBody(body): JsonBody<AddVariantBody>,
) -> ApiResult<Response> {
    context.require(&[Role::Staff])?;
    let parent = parse_sku(&parent)?;
    let sku = parse_sku(&body.sku)?;
    let price = body.price.map(|p| p.parse("price")).transpose()?;
    // a SKU that is already another product never becomes this one's variant
    let existing = state.stores.products.load(sku.as_str()).await?.aggregate;
    if let Some(details) = existing.details() {
        if details.variant_of.as_ref().map(|(p, _)| p) != Some(&parent) {
            let taken = ProductError::VariantSkuTaken(sku.clone());
            return Err(ApiError::conflict(taken.to_string()));
        }
    }
    let added = state
        .stores
        .products
        .execute(
            parent.as_str(),
            ProductCommand::AddVariant {
                sku: sku.clone(),
                option_values: body.option_values,
            },
            &context.metadata(),
        )
        .await?;
    let product = state.stores.products.load(parent.as_str()).await?.aggregate;
    let details = product
        .details()
        .ok_or_else(|| ApiError::not_found(format!("no product {parent}")))?;
    let option_values = details
        .variants
        .get(&sku)
        .cloned()
        .ok_or_else(|| ApiError::conflict(format!("{sku} is not a variant of {parent}")))?;
    let name = body.name.unwrap_or_else(|| {
        let values: Vec<&str> = details
            .options
            .iter()
            .filter_map(|option| option_values.get(&option.name).map(String::as_str))
            .collect();
        format!("{} ({})", details.name, values.join(" / "))
    });
    let prices = match price {
        Some(price) => vec![price],
        None => details.prices(),
    };
    let created = state
        .stores
        .products
        .execute(
            sku.as_str(),
            ProductCommand::CreateVariant {
                sku: sku.clone(),
                parent: parent.clone(),
                option_values,
                name,
                description: details.description.clone(),
                category: details.category.clone(),
                prices,
                created_at: chrono::Utc::now(),
            },
            &context.metadata(),
        )
        .await?;
    let position = created.position.or(added.position);
    let mut response = written(
        StatusCode::CREATED,
        position,
        ProductWritten {
            sku: sku.to_string(),
            position: position_text(position),
        },
    );
    if let Ok(location) = format!("/api/products/{sku}").parse() {
        response.headers_mut().insert("location", location);
    }
    Ok(response)
}

/// The upload's query: the image's alt text (what it shows, for screen readers).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageQuery {
    #[serde(default)]
    pub alt: String,
}

/// The body of an image upload: the image file's bytes as they are (PNG or JPEG, at most
/// 5 MiB; the type is read from the bytes, not from `Content-Type`). The alt text goes in the
/// `alt` query parameter.
#[derive(Debug, JsonSchema)]
#[schemars(extend("format" = "binary"))]
pub struct ImageFileBody(pub String);

#[derive(Debug, Serialize, JsonSchema)]
pub struct ImageWritten {
    pub sku: String,
    /// The sha256 of the original: the same file is the same image.
    pub image_id: String,
    pub content_type: String,
    pub width: u32,
    pub height: u32,
    pub position: Option<String>,
}

fn refused(error: UploadError) -> ApiError {
    let code = match error {
        UploadError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
        UploadError::UnsupportedType => ErrorCode::UnsupportedMediaType,
        UploadError::Empty | UploadError::TooManyPixels { .. } | UploadError::Undecodable(_) => {
            ErrorCode::Validation
        }
    };
    ApiError::new(code, error.to_string())
}

/// Stores the image (original and thumbnails, content addressed) and adds it to the product.
/// A product that does not exist or is discontinued is refused after the objects are stored:
/// they stay, unreferenced (the same bytes uploaded again find them).
async fn add_image(
    State(state): State<AppState>,
    context: RequestContext,
    Path(sku): Path<String>,
    query: Result<Query<ImageQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Response> {
    context.require(&[Role::Staff])?;
    let sku = parse_sku(&sku)?;
    let Query(query) = query.map_err(|e| ApiError::validation(format!("query: {e}")))?;
    let body = body.map_err(|_| {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("an image is at most {} bytes", media::MAX_UPLOAD_BYTES),
        )
    })?;
    let stored = match state.config.images.upload(body).await {
        Ok(stored) => stored,
        Err(StoreUploadError::Refused(error)) => return Err(refused(error)),
        Err(StoreUploadError::Store(error)) => {
            tracing::warn!(%error, "image store unavailable");
            return Err(ApiError::new(
                ErrorCode::ServiceUnavailable,
                "the image store is unavailable; retry the upload",
            )
            .with_retry_after(1));
        }
    };
    let command = ProductCommand::AddImage {
        image: ProductImage {
            image_id: stored.id.clone(),
            format: stored.format,
            width: stored.width,
            height: stored.height,
            alt: query.alt,
        },
    };
    let receipt = state
        .stores
        .products
        .execute(sku.as_str(), command, &context.metadata())
        .await?;
    Ok(written(
        StatusCode::CREATED,
        receipt.position,
        ImageWritten {
            sku: sku.to_string(),
            image_id: stored.id.to_string(),
            content_type: stored.format.content_type().to_owned(),
            width: stored.width,
            height: stored.height,
            position: position_text(receipt.position),
        },
    ))
}

/// Takes an image off the product (its objects stay: another product may show the same bytes).
async fn remove_image(
    State(state): State<AppState>,
    context: RequestContext,
    Path((sku, image_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    context.require(&[Role::Staff])?;
    let sku = parse_sku(&sku)?;
    let image_id =
        ImageId::parse(image_id).map_err(|e| ApiError::validation(format!("image_id: {e}")))?;
    let receipt = state
        .stores
        .products
        .execute(
            sku.as_str(),
            ProductCommand::RemoveImage { image_id },
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
