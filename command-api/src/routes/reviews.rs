//! Product reviews: customers write one review per product (`/api/products/{sku}/reviews`),
//! edit their own (`PUT /api/reviews/{id}`) and vote other customers' reviews helpful; staff hide
//! and publish them.
//!
//! The verified-purchase badge is proven here, from the event store, never taken from the
//! client: the customer has an order with that SKU that was delivered (an order refunded after
//! delivery still counts: the customer had the product). Customers without one may review too;
//! their review simply carries no badge. The candidate orders are found by the index of order
//! placements by customer (migration 0130) and each is folded from its own stream.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{post, put};
use axum::Router;
use domain::derived_ids::review_id_of;
use domain::{CustomerId, Rating, ReviewCommand, ReviewError, Sku};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::products::{parse_sku, NoFields};
use super::{position_text, written, OptionalJsonBody};
use crate::context::RequestContext;
use crate::json::JsonBody;
use crate::AppState;
use accounts::Role;
use http_vocabulary::domain_errors::Coded;
use http_vocabulary::{ApiError, ApiResult};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/products/{sku}/reviews", post(write))
        .route("/api/reviews/{id}", put(edit))
        .route("/api/reviews/{id}/helpful", post(vote_helpful))
        .route("/api/reviews/{id}/hide", post(hide))
        .route("/api/reviews/{id}/publish", post(publish))
}

/// A review: 1 to 5 stars, a title, and a text (may be empty).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    /// 1 to 5.
    pub rating: i64,
    /// 1 to 120 characters.
    pub title: String,
    /// Up to 5,000 characters.
    #[serde(default)]
    pub text: String,
}

/// Why staff hide or publish a review (kept in the event, shown to auditors).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModerationBody {
    /// 1 to 500 characters.
    pub reason: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ReviewWritten {
    pub review_id: Uuid,
    pub sku: String,
    /// Whether the review carries the verified-purchase badge (a delivered order of the author
    /// with this SKU).
    pub verified_purchase: bool,
    pub position: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ReviewChanged {
    pub review_id: Uuid,
    pub position: Option<String>,
}

fn parse_rating(stars: i64) -> ApiResult<Rating> {
    Rating::new(stars).map_err(|e| ApiError::validation(e.to_string()))
}

/// The signed-in customer, or 401/403.
fn customer(context: &RequestContext) -> ApiResult<CustomerId> {
    Ok(CustomerId::new(context.require(&[Role::Customer])?.sub))
}

/// Whether `customer` has a delivered order containing `sku` or one of its variants (a shopper
/// buys `TEE-M` and reviews `TEE`), read from the order streams.
pub async fn purchase_delivered(
    state: &AppState,
    customer: CustomerId,
    sku: &Sku,
) -> ApiResult<bool> {
    let product = state.stores.products.load(sku.as_str()).await?.aggregate;
    let variants = product.details().map(|d| &d.variants);
    let bought =
        |line_sku: &Sku| line_sku == sku || variants.is_some_and(|v| v.contains_key(line_sku));
    let candidates = eventlog::streams::stream_ids_by_event_field(
        &state.pool,
        "order",
        "OrderPlaced",
        "customer",
        &customer.to_string(),
    )
    .await?;
    for order_id in candidates {
        let order = state.stores.orders.load(&order_id).await?.aggregate;
        let Some(placed) = order.placed() else {
            continue;
        };
        if placed.delivered
            && placed.customer == Some(customer)
            && placed.lines.iter().any(|line| bought(&line.sku))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn write(
    State(state): State<AppState>,
    context: RequestContext,
    Path(sku): Path<String>,
    JsonBody(body): JsonBody<ReviewBody>,
) -> ApiResult<Response> {
    let author = customer(&context)?;
    let sku = parse_sku(&sku)?;
    let rating = parse_rating(body.rating)?;
    let product = state.stores.products.load(sku.as_str()).await?.aggregate;
    if product.details().is_none() {
        return Err(ApiError::not_found("no such product"));
    }
    let review_id = review_id_of(author, &sku);
    let verified_purchase = purchase_delivered(&state, author, &sku).await?;
    let command = ReviewCommand::Write {
        review_id,
        author,
        sku: sku.clone(),
        rating,
        title: body.title,
        text: body.text,
        verified_purchase,
        at: chrono::Utc::now(),
    };
    let receipt = state
        .stores
        .reviews
        .execute(&review_id.to_string(), command, &context.metadata())
        .await?;
    // a replayed write answers with what it recorded then
    let verified_purchase = receipt
        .events
        .iter()
        .find_map(|event| match event {
            domain::ReviewEvent::ReviewWritten {
                verified_purchase, ..
            } => Some(*verified_purchase),
            _ => None,
        })
        .unwrap_or(verified_purchase);
    let mut response = written(
        StatusCode::CREATED,
        receipt.position,
        ReviewWritten {
            review_id: review_id.as_uuid(),
            sku: sku.to_string(),
            verified_purchase,
            position: position_text(receipt.position),
        },
    );
    if let Ok(location) = format!("/api/reviews/{review_id}").parse() {
        response.headers_mut().insert("location", location);
    }
    Ok(response)
}

/// Runs a command on an existing review and answers 200 with its position.
async fn run(
    state: &AppState,
    context: &RequestContext,
    review_id: Uuid,
    command: ReviewCommand,
) -> ApiResult<Response> {
    let receipt = state
        .stores
        .reviews
        .execute(&review_id.to_string(), command, &context.metadata())
        .await?;
    Ok(written(
        StatusCode::OK,
        receipt.position,
        ReviewChanged {
            review_id,
            position: position_text(receipt.position),
        },
    ))
}

async fn edit(
    State(state): State<AppState>,
    context: RequestContext,
    Path(review_id): Path<Uuid>,
    JsonBody(body): JsonBody<ReviewBody>,
) -> ApiResult<Response> {
    let author = customer(&context)?;
    let rating = parse_rating(body.rating)?;
    // the badge is proven again (a delivery since the review was written earns it); the SKU is
    // the review's own
    let review = state
        .stores
        .reviews
        .load(&review_id.to_string())
        .await?
        .aggregate;
    let Some(existing) = review.written() else {
        return Err(refused(ReviewError::NotFound));
    };
    if existing.author != author {
        return Err(refused(ReviewError::NotAuthor));
    }
    let verified_purchase =
        existing.verified_purchase || purchase_delivered(&state, author, &existing.sku).await?;
    let command = ReviewCommand::Edit {
        author,
        rating,
        title: body.title,
        text: body.text,
        verified_purchase,
        at: chrono::Utc::now(),
    };
    run(&state, &context, review_id, command).await
}

async fn vote_helpful(
    State(state): State<AppState>,
    context: RequestContext,
    Path(review_id): Path<Uuid>,
    OptionalJsonBody(NoFields {}): OptionalJsonBody<NoFields>,
) -> ApiResult<Response> {
    let voter = customer(&context)?;
    let command = ReviewCommand::VoteHelpful {
        voter,
        at: chrono::Utc::now(),
    };
    run(&state, &context, review_id, command).await
}

async fn hide(
    State(state): State<AppState>,
    context: RequestContext,
    Path(review_id): Path<Uuid>,
    JsonBody(body): JsonBody<ModerationBody>,
) -> ApiResult<Response> {
    context.require(&[Role::Staff])?;
    let command = ReviewCommand::Hide {
        reason: body.reason,
        at: chrono::Utc::now(),
    };
    run(&state, &context, review_id, command).await
}

async fn publish(
    State(state): State<AppState>,
    context: RequestContext,
    Path(review_id): Path<Uuid>,
    JsonBody(body): JsonBody<ModerationBody>,
) -> ApiResult<Response> {
    context.require(&[Role::Staff])?;
    let command = ReviewCommand::Publish {
        reason: body.reason,
        at: chrono::Utc::now(),
    };
    run(&state, &context, review_id, command).await
}

/// A refusal decided here (before the command runs), coded as the aggregate would code it.
fn refused(error: ReviewError) -> ApiError {
    ApiError::new(error.code(), error.to_string())
}
