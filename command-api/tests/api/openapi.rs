//! The OpenAPI document against the router.

use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::harness::TestApp;

#[tokio::test]
async fn the_openapi_document_lists_every_route_and_every_listed_route_exists() {
    let app = TestApp::spawn().await;
    let (status, _, document) = app.send(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"], "3.1.0");
    for route in command_api::routes::ROUTES {
        let operation = &document["paths"][route.path][route.method];
        assert!(
            operation.is_object(),
            "{} {} missing",
            route.method,
            route.path
        );
        // every $ref resolves
        let text = operation.to_string();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(
                document["components"]["schemas"][name].is_object(),
                "unresolved {name}"
            );
        }
        // and the route is served: not the fallback's 404 / 405
        let path = route
            .path
            .replace("{sku}", "ZZ-1")
            .replace("{id}", &Uuid::new_v4().to_string());
        let method: Method = route.method.to_uppercase().parse().unwrap();
        let (status, _, body) = app.send(method, &path, None, Some(json!({}))).await;
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{} {}",
            route.method,
            route.path
        );
        assert_ne!(
            body["detail"], "no such route",
            "{} {}",
            route.method, route.path
        );
    }
    app.finish().await;
}
