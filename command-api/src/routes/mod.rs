//! The routes, one file per resource, and the request/response pieces they share.
//!
//! [`ROUTES`] lists every route with its request and response types: the OpenAPI document is
//! generated from it, and the fuzz test throws malformed input at every entry.

pub mod account;
pub mod auth;
pub mod carts;
pub mod categories;
pub mod inventory;
pub mod orders;
pub mod privacy;
pub mod products;
pub mod read_models;
pub mod reviews;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use domain::{Currency, Money};
use eventlog::LogPosition;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::json::JsonBody;
use crate::AppState;
use http_vocabulary::POSITION_HEADER;
use http_vocabulary::{ApiError, ApiResult, ErrorCode};

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(auth::router())
        .merge(account::router())
        .merge(products::router())
        .merge(categories::router())
        .merge(inventory::router())
        .merge(carts::router())
        .merge(orders::router())
        .merge(privacy::router())
        .merge(read_models::router())
        .merge(reviews::router())
}

/// An amount of money in minor units (cents) and an ISO 4217 currency code.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyBody {
    pub amount_minor: i64,
    /// ISO 4217 code, e.g. `EUR`.
    pub currency: String,
}

impl MoneyBody {
    pub fn parse(&self, field: &str) -> ApiResult<Money> {
        let currency = Currency::parse(&self.currency)
            .map_err(|e| ApiError::validation(format!("{field}.currency: {e}")))?;
        Ok(Money::new(self.amount_minor, currency))
    }
}

/// What a command answered: the log position of its last event (`null` when it changed
/// nothing), for read-your-writes on the query API. Also sent as the `Shop-Position` header.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Written {
    pub position: Option<String>,
}

/// A response carrying a log position in its body and in the `Shop-Position` header.
pub fn written<T: Serialize>(
    status: StatusCode,
    position: Option<LogPosition>,
    body: T,
) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(position) = position {
        if let Ok(value) = HeaderValue::from_str(&position.to_string()) {
            response.headers_mut().insert(POSITION_HEADER, value);
        }
    }
    response
}

pub fn position_text(position: Option<LogPosition>) -> Option<String> {
    position.map(|p| p.to_string())
}

/// A JSON body that may also be absent (an empty body means `T::default()`).
pub struct OptionalJsonBody<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJsonBody<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let has_body = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v != "0")
            || request.headers().contains_key(header::TRANSFER_ENCODING)
            || request.headers().contains_key(header::CONTENT_TYPE);
        if !has_body {
            return Ok(OptionalJsonBody(T::default()));
        }
        let (parts, body) = request.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|_| {
                ApiError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
            })?;
        if bytes.is_empty() {
            return Ok(OptionalJsonBody(T::default()));
        }
        let JsonBody(value) =
            JsonBody::<T>::from_request(Request::from_parts(parts, bytes.into()), state).await?;
        Ok(OptionalJsonBody(value))
    }
}

/// A route, for the OpenAPI document and the fuzz test.
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// Who may call it: `public`, `guest or customer`, `customer`, `staff`, `owner or staff`.
    pub access: &'static str,
    pub request: Option<fn(&mut SchemaGenerator) -> Schema>,
    /// The request body's media type (`application/json` but for uploads).
    pub request_media_type: &'static str,
    /// Optional query parameters: name and description (strings).
    pub query: &'static [(&'static str, &'static str)],
    pub response: fn(&mut SchemaGenerator) -> Schema,
    pub success: u16,
}

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

macro_rules! route {
    ($method:literal, $path:literal, $summary:literal, $access:literal, $request:ty, $response:ty, $success:literal) => {
        RouteDoc {
            method: $method,
            path: $path,
            summary: $summary,
            access: $access,
            request: Some(schema::<$request>),
            request_media_type: "application/json",
            query: &[],
            response: schema::<$response>,
            success: $success,
        }
    };
    ($method:literal, $path:literal, $summary:literal, $access:literal, $response:ty, $success:literal) => {
        RouteDoc {
            method: $method,
            path: $path,
            summary: $summary,
            access: $access,
            request: None,
            request_media_type: "application/json",
            query: &[],
            response: schema::<$response>,
            success: $success,
        }
    };
}

/// Every route of the command API.
pub const ROUTES: &[RouteDoc] = &[
    route!(
        "post",
        "/api/auth/register",
        "Create a customer account",
        "public",
        auth::RegisterBody,
        auth::Session,
        201
    ),
    route!(
        "post",
        "/api/auth/login",
        "Sign in",
        "public",
        auth::LoginBody,
        auth::Session,
        200
    ),
    route!(
        "post",
        "/api/auth/refresh",
        "Exchange a refresh token for new tokens (rotates it)",
        "public",
        auth::RefreshBody,
        auth::Session,
        200
    ),
    route!(
        "post",
        "/api/auth/logout",
        "Revoke a refresh token's session",
        "public",
        auth::RefreshBody,
        auth::LoggedOut,
        200
    ),
    route!(
        "post",
        "/api/products",
        "Create a product",
        "staff",
        products::CreateProductBody,
        products::ProductWritten,
        201
    ),
    route!(
        "patch",
        "/api/products/{sku}",
        "Change a product's name, description, category or price",
        "staff",
        products::ReviseProductBody,
        products::ProductWritten,
        200
    ),
    route!(
        "post",
        "/api/products/{sku}/discontinue",
        "Discontinue a product",
        "staff",
        products::ProductWritten,
        200
    ),
    RouteDoc {
        method: "post",
        path: "/api/products/{sku}/images",
        summary: "Upload an image of a product (PNG or JPEG, at most 5 MiB; the body is the file)",
        access: "staff",
        request: Some(schema::<products::ImageFileBody>),
        request_media_type: "application/octet-stream",
        query: &[(
            "alt",
            "what the image shows, for screen readers (at most 250 characters)",
        )],
        response: schema::<products::ImageWritten>,
        success: 201,
    },
    route!(
        "delete",
        "/api/products/{sku}/images/{image_id}",
        "Take an image off a product",
        "staff",
        products::ProductWritten,
        200
    ),
    route!(
        "put",
        "/api/products/{sku}/prices/{currency}",
        "Set the product's price in a currency (the base currency's reprices it)",
        "staff",
        products::SetPriceBody,
        products::ProductWritten,
        200
    ),
    route!(
        "delete",
        "/api/products/{sku}/prices/{currency}",
        "Remove the product's price in a currency (never the base price)",
        "staff",
        products::ProductWritten,
        200
    ),
    route!(
        "put",
        "/api/products/{sku}/options",
        "Declare the options the product's variants choose from (size, colour)",
        "staff",
        products::DeclareOptionsBody,
        products::ProductWritten,
        200
    ),
    route!(
        "post",
        "/api/products/{sku}/variants",
        "Add a variant: its own SKU (own stock and prices) with one value of every option",
        "staff",
        products::AddVariantBody,
        products::ProductWritten,
        201
    ),
    route!(
        "post",
        "/api/categories",
        "Create a category, as a root or under a parent",
        "staff",
        categories::CreateCategoryBody,
        categories::CategoryWritten,
        201
    ),
    route!(
        "patch",
        "/api/categories/{slug}",
        "Rename a category",
        "staff",
        categories::RenameCategoryBody,
        categories::CategoryWritten,
        200
    ),
    route!(
        "post",
        "/api/categories/{slug}/move",
        "Move a category (with its subcategories) under another or to the roots; never into itself (category_cycle)",
        "staff",
        categories::MoveCategoryBody,
        categories::CategoryWritten,
        200
    ),
    route!(
        "put",
        "/api/featured-products",
        "Set the featured products, in order",
        "staff",
        categories::FeaturedProductsBody,
        categories::FeaturedWritten,
        200
    ),
    route!(
        "post",
        "/api/inventory/{sku}/receive",
        "Receive stock",
        "staff",
        inventory::ReceiveBody,
        inventory::StockWritten,
        200
    ),
    route!(
        "post",
        "/api/inventory/{sku}/adjust",
        "Correct stock (stocktake, damage)",
        "staff",
        inventory::AdjustBody,
        inventory::StockWritten,
        200
    ),
    route!(
        "post",
        "/api/carts",
        "Open a cart (a guest's without a token, a customer's with one)",
        "guest or customer",
        carts::CreateCartBody,
        carts::CartOpened,
        201
    ),
    route!(
        "post",
        "/api/carts/{id}/items",
        "Add an item",
        "cart holder",
        carts::AddItemBody,
        carts::CartWritten,
        200
    ),
    route!(
        "patch",
        "/api/carts/{id}/items/{sku}",
        "Change an item's quantity",
        "cart holder",
        carts::ChangeQuantityBody,
        carts::CartWritten,
        200
    ),
    route!(
        "delete",
        "/api/carts/{id}/items/{sku}",
        "Remove an item",
        "cart holder",
        carts::CartWritten,
        200
    ),
    route!(
        "post",
        "/api/carts/{id}/coupon",
        "Apply a coupon",
        "cart holder",
        carts::CouponBody,
        carts::CartWritten,
        200
    ),
    route!(
        "post",
        "/api/carts/{id}/merge",
        "Absorb a guest cart into the customer's cart",
        "customer",
        carts::MergeBody,
        carts::CartWritten,
        200
    ),
    route!(
        "post",
        "/api/carts/{id}/checkout",
        "Check out: the order is placed and paid asynchronously",
        "cart holder",
        carts::CheckoutBody,
        carts::CheckoutAccepted,
        202
    ),
    route!(
        "post",
        "/api/orders/{id}/cancel",
        "Cancel an order before it ships",
        "owner or staff",
        orders::CancelBody,
        orders::OrderWritten,
        200
    ),
    route!(
        "post",
        "/api/orders/{id}/ship",
        "Mark an order shipped",
        "staff",
        orders::ShipBody,
        orders::OrderWritten,
        200
    ),
    route!(
        "post",
        "/api/orders/{id}/deliver",
        "Mark an order delivered",
        "staff",
        orders::OrderWritten,
        200
    ),
    route!(
        "post",
        "/api/orders/{id}/refund",
        "Refund part or all of an order",
        "staff",
        orders::RefundBody,
        orders::OrderWritten,
        200
    ),
    route!(
        "get",
        "/api/me/data",
        "Export everything the shop holds about the signed-in customer",
        "customer",
        crate::privacy::DataExport,
        200
    ),
    route!(
        "post",
        "/api/me/erasure",
        "Erase the signed-in customer's personal data and account",
        "customer",
        crate::privacy::ErasureReport,
        200
    ),
    route!(
        "get",
        "/api/customers/{id}/data",
        "Export everything the shop holds about a customer",
        "staff",
        crate::privacy::DataExport,
        200
    ),
    route!(
        "post",
        "/api/customers/{id}/erasure",
        "Erase a customer's personal data and account",
        "staff",
        crate::privacy::ErasureReport,
        200
    ),
    route!(
        "post",
        "/api/read-models/{name}/rebuild",
        "Rebuild a read model from the whole log in the background (blue/green)",
        "staff",
        read_models::RebuildStarted,
        202
    ),
    route!(
        "put",
        "/api/me/profile",
        "Change my name and phone number",
        "signed in",
        account::ProfileBody,
        account::ProfileWritten,
        200
    ),
    route!(
        "post",
        "/api/me/addresses",
        "Save an address in my address book",
        "signed in",
        account::SavedAddressBody,
        account::AddressWritten,
        201
    ),
    route!(
        "put",
        "/api/me/addresses/{id}",
        "Change a saved address",
        "signed in",
        account::SavedAddressBody,
        account::AddressWritten,
        200
    ),
    route!(
        "delete",
        "/api/me/addresses/{id}",
        "Remove a saved address",
        "signed in",
        account::AddressWritten,
        200
    ),
    route!(
        "post",
        "/api/me/addresses/{id}/default",
        "Make a saved address (or stop it being) my default shipping or billing address",
        "signed in",
        account::DefaultsBody,
        account::AddressWritten,
        200
    ),
    route!(
        "post",
        "/api/auth/logout-all",
        "Sign out every session of my account (all devices)",
        "signed in",
        account::SessionsEnded,
        200
    ),
    route!(
        "delete",
        "/api/auth/sessions/{id}",
        "Sign out one of my sessions",
        "signed in",
        account::SessionsEnded,
        200
    ),
    route!(
        "post",
        "/api/auth/password-reset",
        "Ask for a password reset code by e-mail (the same answer for every address)",
        "public",
        account::PasswordResetBody,
        account::PasswordResetRequested,
        202
    ),
    route!(
        "post",
        "/api/auth/password-reset/confirm",
        "Set a new password with an e-mailed reset code (signs out every session)",
        "public",
        account::PasswordResetConfirmBody,
        account::PasswordChanged,
        200
    ),
    route!(
        "post",
        "/api/products/{sku}/reviews",
        "Review a product (one review per customer and product; the verified-purchase badge \
         when the customer has a delivered order with it)",
        "customer",
        reviews::ReviewBody,
        reviews::ReviewWritten,
        201
    ),
    route!(
        "put",
        "/api/reviews/{id}",
        "Change my review",
        "customer (the author)",
        reviews::ReviewBody,
        reviews::ReviewChanged,
        200
    ),
    route!(
        "post",
        "/api/reviews/{id}/helpful",
        "Vote another customer's review helpful (once per customer)",
        "customer",
        reviews::ReviewChanged,
        200
    ),
    route!(
        "post",
        "/api/reviews/{id}/hide",
        "Hide a review from customers and from the product's rating",
        "staff",
        reviews::ModerationBody,
        reviews::ReviewChanged,
        200
    ),
    route!(
        "post",
        "/api/reviews/{id}/publish",
        "Show a hidden review again",
        "staff",
        reviews::ModerationBody,
        reviews::ReviewChanged,
        200
    ),
];
