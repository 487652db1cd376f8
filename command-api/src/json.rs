//! `JsonBody<T>`: axum's JSON extractor with shop's errors. Wrong content type → 415, too large
//! → 413, anything else wrong with the body (syntax, unknown or missing fields, wrong types) →
//! 400 `malformed_request`; never a 500.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;

use crate::problem::{ApiError, ErrorCode};

/// The request body, parsed as JSON into `T`.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(reject(rejection)),
        }
    }
}

fn reject(rejection: JsonRejection) -> ApiError {
    let code = match rejection.status() {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        _ => ErrorCode::MalformedRequest,
    };
    let detail = match code {
        ErrorCode::UnsupportedMediaType => {
            "expected a body with Content-Type: application/json".to_owned()
        }
        ErrorCode::PayloadTooLarge => "the request body is too large".to_owned(),
        _ => rejection.body_text(),
    };
    ApiError::new(code, detail)
}
