//! The browser front-end (storefront at `/`, console at `/console`): static files built by
//! `scripts/web.sh build` into a directory (`SHOP_WEB_DIR`), served as they are. A path that
//! names no file gets `index.html` (the single-page app routes it), except under the APIs'
//! prefixes (`/api`, `/graphql`, `/health`, `/metrics`), which keep their own 404s.

use std::path::{Path, PathBuf};

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::services::{ServeDir, ServeFile};

/// Paths the front-end never answers: they belong to an API.
const API_PREFIXES: [&str; 4] = ["/api", "/graphql", "/health", "/metrics"];

/// The built front-end in `dir`, as a fallback to merge under the APIs' routes.
pub fn web_router(dir: &Path) -> Router {
    let index: PathBuf = dir.join("index.html");
    let files = ServeDir::new(dir)
        .append_index_html_on_directories(true)
        .fallback(ServeFile::new(index));
    Router::new()
        .fallback_service(files)
        .layer(middleware::from_fn(api_paths_and_caching))
}

/// Keeps the APIs' prefixes out of the single-page fallback, and lets browsers keep the
/// content-hashed assets (`/assets/…`) for good while `index.html` is revalidated each time.
async fn api_paths_and_caching(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let under_api = API_PREFIXES
        .iter()
        .any(|prefix| path == *prefix || path.starts_with(&format!("{prefix}/")));
    if under_api {
        return (StatusCode::NOT_FOUND, "no such route").into_response();
    }
    let hashed = path.starts_with("/assets/");
    let mut response = next.run(request).await;
    let cache = if hashed {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn get(path: &str) -> Request {
        Request::builder()
            .uri(path)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn files_are_served_and_unknown_pages_get_the_app_but_api_paths_do_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<main>app</main>").unwrap();
        std::fs::create_dir(dir.path().join("assets")).unwrap();
        std::fs::write(dir.path().join("assets/app-1a2b.js"), "console.log(1)").unwrap();
        let web = web_router(dir.path());

        let asset = web
            .clone()
            .oneshot(get("/assets/app-1a2b.js"))
            .await
            .unwrap();
        assert_eq!(asset.status(), StatusCode::OK);
        assert!(asset.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .contains("javascript"));
        assert!(asset.headers()[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable"));
        assert_eq!(body(asset).await, "console.log(1)");

        for page in ["/", "/console", "/console/audit", "/product/MUG-001"] {
            let response = web.clone().oneshot(get(page)).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{page}");
            assert_eq!(response.headers()[header::CACHE_CONTROL], "no-cache");
            assert_eq!(body(response).await, "<main>app</main>", "{page}");
        }
        for api in ["/api/nothing", "/graphql/nothing", "/health/x", "/metrics"] {
            let response = web.clone().oneshot(get(api)).await.unwrap();
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{api}");
        }
        // no way out of the directory
        let escape = web.oneshot(get("/../Cargo.toml")).await.unwrap();
        assert!(!body(escape).await.contains("[package]"));
    }
}
