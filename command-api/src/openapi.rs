//! The OpenAPI 3.1 document at `/api/openapi.json`, generated from [`crate::routes::ROUTES`] and
//! the request/response types' JSON Schemas (schemars), so it cannot drift from the code.

use axum::Json;
use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use crate::routes::ROUTES;
use http_vocabulary::Problem;

pub async fn serve() -> Json<Value> {
    Json(document())
}

fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            json!({
                "name": name, "in": "path", "required": true,
                "schema": match name {
                    "sku" | "slug" => json!({"type": "string"}),
                    "currency" => json!({"type": "string", "pattern": "^[A-Z]{3}$"}),
                    "image_id" => json!({"type": "string", "pattern": "^[0-9a-f]{64}$"}),
                    _ => json!({"type": "string", "format": "uuid"}),
                }
            })
        })
        .collect()
}

/// The whole document.
pub fn document() -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let problem = generator.subschema_for::<Problem>();
    let mut paths: Map<String, Value> = Map::new();
    for route in ROUTES {
        let mut operation = json!({
            "summary": route.summary,
            "description": format!("Access: {}.", route.access),
            "parameters": path_parameters(route.path),
            "responses": {
                route.success.to_string(): {
                    "description": "success",
                    "content": {"application/json": {"schema": (route.response)(&mut generator)}}
                },
                "default": {
                    "description": "an error, with a stable `code`",
                    "content": {"application/problem+json": {"schema": problem}}
                }
            }
        });
        if let Some(request) = route.request {
            operation["requestBody"] = json!({
                "required": true,
                "content": {route.request_media_type: {"schema": request(&mut generator)}}
            });
        }
        if let Some(parameters) = operation["parameters"].as_array_mut() {
            for (name, description) in route.query {
                parameters.push(json!({
                    "name": name, "in": "query", "required": false,
                    "description": description, "schema": {"type": "string"}
                }));
            }
        }
        if route.method == "post" {
            if let Some(parameters) = operation["parameters"].as_array_mut() {
                parameters.push(json!({
                    "name": "Idempotency-Key", "in": "header", "required": false,
                    "description": "Retries with the same key and body get the first response; the same key with another body is a 422.",
                    "schema": {"type": "string", "maxLength": 255}
                }));
            }
        }
        if route.access != "public" {
            operation["security"] = json!([{"bearer": []}, {}]);
        }
        if let Some(methods) = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}))
            .as_object_mut()
        {
            methods.insert(route.method.to_owned(), operation);
        }
    }
    let schemas = generator.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "info": {"title": "shop command API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
        }
    })
}
