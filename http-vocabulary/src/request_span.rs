//! Names every request and runs it in a `request` span (request id, method, path), so every log
//! line and trace span of its handling carries the request id; the response carries the id in
//! `X-Request-Id`.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use uuid::Uuid;

use crate::headers::{header_text, REQUEST_ID_HEADER, REQUEST_ID_MAX_LEN};
use crate::problem::ApiError;

/// This request's id: the client's `X-Request-Id` when it is well formed, a UUID v7 otherwise.
/// Handlers behind [`with_request_span`] extract it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Adds the request span to every route of `router` (routes merged afterwards get none).
pub fn with_request_span<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(axum::middleware::from_fn(request_span))
}

/// The middleware [`with_request_span`] adds.
pub async fn request_span(mut request: Request, next: Next) -> Response {
    let request_id = header_text(request.headers(), REQUEST_ID_HEADER, REQUEST_ID_MAX_LEN)
        .unwrap_or_else(|| Uuid::now_v7().to_string());
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        path = %request.uri().path()
    );
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    // instrumented, not entered: a guard held across an await corrupts the span stack when the
    // task moves between threads (seen as "tried to clone a span that already closed" panics
    // under load)
    let mut response = tracing::Instrument::instrument(next.run(request), span).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .ok_or_else(|| ApiError::internal("the request span layer is missing"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    fn app() -> Router {
        with_request_span(Router::new().route("/", get(|id: RequestId| async move { id.0 })))
    }

    async fn call(request_id: Option<&str>) -> (Option<String>, String) {
        let mut request = Request::builder().uri("/");
        if let Some(id) = request_id {
            request = request.header(REQUEST_ID_HEADER, id);
        }
        let response = app()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let header = response
            .headers()
            .get(REQUEST_ID_HEADER)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        (header, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_clients_request_id_is_kept_and_answered() {
        let (header, seen) = call(Some("req-42")).await;
        assert_eq!(header.as_deref(), Some("req-42"));
        assert_eq!(seen, "req-42");
    }

    #[tokio::test]
    async fn a_missing_or_malformed_request_id_is_replaced_by_a_uuid() {
        for sent in [None, Some("two words")] {
            let (header, seen) = call(sent).await;
            let header = header.expect("the response names the request");
            assert_eq!(header, seen);
            assert!(Uuid::parse_str(&header).is_ok(), "{header} is not a UUID");
        }
    }
}
