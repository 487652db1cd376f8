//! Errors as `application/problem+json` (RFC 9457) with a stable `code`: the one error vocabulary
//! of shop's APIs (the query API puts the same codes in `extensions.code`). Internal errors stay
//! inside: the client gets an opaque 500, the cause is logged once. Every error answer counts in
//! `shop_api_errors_total` by code.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;

/// Every error code an API answers with. Stable: clients switch on these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not JSON, has unknown or missing fields, or fields of the wrong type.
    MalformedRequest,
    /// The request is well formed but a value is not acceptable.
    Validation,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    /// The resource's state does not allow this (e.g. a checked-out cart).
    Conflict,
    /// Other writers kept changing the same thing; retrying later may succeed.
    ConcurrencyConflict,
    InsufficientStock,
    /// The product has no price in the cart's currency (staff can set one).
    NoPriceInCurrency,
    /// A category cannot move under itself or one of its own subcategories.
    CategoryCycle,
    /// The customer has reviewed this product already (one review per customer and product;
    /// edit it instead).
    AlreadyReviewed,
    /// The customer has voted for this review already (one vote per customer).
    AlreadyVoted,
    /// The Idempotency-Key was used before with a different request.
    IdempotencyKeyReused,
    /// A request with this Idempotency-Key is still being processed.
    RequestInProgress,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited,
    /// A refresh token that was already rotated was used again; its whole family is revoked.
    TokenReused,
    /// A read asked for a log position its read model has not reached within the wait bound;
    /// retry shortly (the error carries the current position).
    NotYetConsistent,
    /// A GraphQL query is too deep, too complex or too large.
    QueryTooComplex,
    ServiceUnavailable,
    Internal,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::MalformedRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Validation | ErrorCode::IdempotencyKeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ErrorCode::Unauthorized | ErrorCode::TokenReused => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict
            | ErrorCode::ConcurrencyConflict
            | ErrorCode::InsufficientStock
            | ErrorCode::NoPriceInCurrency
            | ErrorCode::CategoryCycle
            | ErrorCode::AlreadyReviewed
            | ErrorCode::AlreadyVoted
            | ErrorCode::RequestInProgress => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::ServiceUnavailable | ErrorCode::NotYetConsistent => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::QueryTooComplex => StatusCode::BAD_REQUEST,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The snake_case name, as serialized (a test checks they agree).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedRequest => "malformed_request",
            ErrorCode::Validation => "validation",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::ConcurrencyConflict => "concurrency_conflict",
            ErrorCode::InsufficientStock => "insufficient_stock",
            ErrorCode::NoPriceInCurrency => "no_price_in_currency",
            ErrorCode::CategoryCycle => "category_cycle",
            ErrorCode::AlreadyReviewed => "already_reviewed",
            ErrorCode::AlreadyVoted => "already_voted",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::RequestInProgress => "request_in_progress",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TokenReused => "token_reused",
            ErrorCode::NotYetConsistent => "not_yet_consistent",
            ErrorCode::QueryTooComplex => "query_too_complex",
            ErrorCode::ServiceUnavailable => "service_unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// The problem+json body.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Problem {
    /// A URI naming the problem type: `https://shop.example/problems/<code>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: ErrorCode,
}

/// An error a handler returns.
#[derive(Debug, thiserror::Error)]
#[error("{code:?}: {detail}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: String,
    /// Seconds after which a retry may succeed (429, 409 in progress, 503).
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }

    pub fn validation(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Validation, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, detail)
    }

    /// An unexpected failure: logged here, once, with its cause; the client sees an opaque 500.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal, "an internal error occurred")
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl ApiError {
    /// The database cannot be used right now: 503 with Retry-After. A command may have been
    /// sent before the connection broke, so its outcome is unknown; retrying it with the same
    /// Idempotency-Key is safe (a command id never applies twice).
    pub fn database_unavailable(error: &sqlx::Error) -> Self {
        tracing::warn!(%error, "database unavailable");
        ApiError::new(
            ErrorCode::ServiceUnavailable,
            "the database is unavailable; a command may or may not have been applied: retry it \
             with the same Idempotency-Key (it never applies twice)",
        )
        .with_retry_after(1)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if eventlog::error::is_unavailable(&error) {
            ApiError::database_unavailable(&error)
        } else {
            ApiError::internal(error)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        metrics::counter!("shop_api_errors_total", "code" => self.code.as_str()).increment(1);
        let problem = Problem {
            problem_type: format!("https://shop.example/problems/{}", self.code.as_str()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.detail,
            code: self.code,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_agree_with_the_serialized_form() {
        for code in [
            ErrorCode::MalformedRequest,
            ErrorCode::Validation,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::Conflict,
            ErrorCode::ConcurrencyConflict,
            ErrorCode::InsufficientStock,
            ErrorCode::NoPriceInCurrency,
            ErrorCode::CategoryCycle,
            ErrorCode::AlreadyReviewed,
            ErrorCode::AlreadyVoted,
            ErrorCode::IdempotencyKeyReused,
            ErrorCode::RequestInProgress,
            ErrorCode::PayloadTooLarge,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::RateLimited,
            ErrorCode::TokenReused,
            ErrorCode::NotYetConsistent,
            ErrorCode::QueryTooComplex,
            ErrorCode::ServiceUnavailable,
            ErrorCode::Internal,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }
}
