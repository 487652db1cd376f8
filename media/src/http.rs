//! `GET /media/{key}`: an image object from the [`ImageStore`], with its content type and cached
//! for good (keys are content addressed: what a key names never changes). Keys not of the shape
//! this crate makes are 404 without asking the store. Works the same whatever the backend, so a
//! deployment may also point `SHOP_MEDIA_PUBLIC_URL` at a CDN or the bucket itself instead.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http_vocabulary::ApiError;

use crate::{content_type_of_key, ImageStore};

/// The path prefix objects are served under.
pub const MEDIA_PREFIX: &str = "/media";

pub fn router(store: ImageStore) -> Router {
    Router::new()
        .route("/media/{*key}", get(serve))
        .with_state(store)
}

async fn serve(State(store): State<ImageStore>, Path(key): Path<String>) -> Response {
    let Some(content_type) = content_type_of_key(&key) else {
        return ApiError::not_found("no such image").into_response();
    };
    match store.get(&key).await {
        Ok(Some(bytes)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
            ],
            bytes,
        )
            .into_response(),
        Ok(None) => ApiError::not_found("no such image").into_response(),
        Err(error) => {
            tracing::warn!(%error, "media store unavailable");
            ApiError::new(
                http_vocabulary::ErrorCode::ServiceUnavailable,
                "the image store is unavailable",
            )
            .with_retry_after(1)
            .into_response()
        }
    }
}
