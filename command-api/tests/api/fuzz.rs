//! Fuzzing: malformed input at every route never gets a 5xx.

use accounts::Role;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::TestApp;

const FIELDS: &[&str] = &[
    "sku",
    "name",
    "description",
    "category",
    "price",
    "amount_minor",
    "currency",
    "quantity",
    "delta",
    "reason",
    "email",
    "password",
    "refresh_token",
    "code",
    "guest_cart_id",
    "shipping_address",
    "payment_method",
    "tracking",
    "line1",
    "city",
    "postal_code",
    "country",
    "rating",
    "title",
    "text",
];

fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        Just(json!(u64::MAX)),
        "\\PC{0,40}".prop_map(Value::String),
        text_with_controls().prop_map(Value::String),
        "[A-Z0-9-]{1,70}".prop_map(Value::String),
        Just(json!("EUR")),
        Just(json!({"amount_minor": 100, "currency": "EUR"})),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(FIELDS), inner), 0..6).prop_map(
                |fields| Value::Object(
                    fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )
            ),
        ]
    })
}

/// Text with control characters (NUL above all: PostgreSQL's jsonb cannot hold it) among
/// ordinary ones.
fn text_with_controls() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    proptest::collection::vec(
        prop_oneof![
            3 => Just('\u{0}'),
            3 => (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap()),
            1 => Just('\u{7f}'),
            4 => proptest::char::range('a', 'z'),
            2 => any::<char>(),
        ],
        1..12,
    )
    .prop_map(String::from_iter)
}

/// A valid body of the route at `path` (before `{id}`/`{sku}` are filled in), for mutations
/// that must get past the shape checks to reach the stores.
fn example_body(path: &str) -> Option<Value> {
    let address = json!({"name": "A", "line1": "1 Main St", "line2": "Hof", "city": "Berlin",
                         "postal_code": "10115", "country": "DE"});
    Some(match path {
        "/api/auth/register" => {
            json!({"email": "fuzz@example.com", "password": "a long password", "name": "F"})
        }
        "/api/auth/login" => json!({"email": "fuzz@example.com", "password": "a long password"}),
        "/api/auth/refresh" | "/api/auth/logout" => json!({"refresh_token": "0123456789abcdef"}),
        "/api/products" => json!({"sku": "FZ-1", "name": "Fuzz", "description": "d",
                                  "category": "c", "price": {"amount_minor": 100, "currency": "EUR"}}),
        "/api/products/{sku}" => json!({"name": "Fuzz", "description": "d", "category": "c"}),
        "/api/products/{sku}/prices/{currency}" => json!({"amount_minor": 100}),
        "/api/products/{sku}/options" => json!({"options": [{"name": "size", "values": ["S"]}]}),
        "/api/products/{sku}/variants" => {
            json!({"sku": "FZ-1-S", "option_values": {"size": "S"}, "name": "Fuzz S"})
        }
        "/api/categories" => json!({"slug": "fuzz", "name": "Fuzz", "parent": "home"}),
        "/api/categories/{slug}" => json!({"name": "Fuzz"}),
        "/api/categories/{slug}/move" => json!({"parent": "home"}),
        "/api/featured-products" => json!({"skus": ["MUG-1"]}),
        "/api/inventory/{sku}/adjust" => json!({"delta": 1, "reason": "stocktake"}),
        "/api/carts" => json!({"currency": "EUR"}),
        "/api/carts/{id}/items" => json!({"sku": "MUG-1", "quantity": 1}),
        "/api/carts/{id}/coupon" => json!({"code": "WELCOME10"}),
        "/api/carts/{id}/checkout" => {
            json!({"shipping_address": address, "payment_method": "pm_card_visa"})
        }
        "/api/orders/{id}/cancel" => json!({"reason": "changed my mind"}),
        "/api/orders/{id}/ship" => json!({"tracking": "TRK-1"}),
        "/api/orders/{id}/refund" => json!({"amount_minor": 1, "reason": "scratched"}),
        "/api/products/{sku}/reviews" | "/api/reviews/{id}" => {
            json!({"rating": 4, "title": "Good mug", "text": "Keeps coffee warm."})
        }
        "/api/reviews/{id}/hide" | "/api/reviews/{id}/publish" => json!({"reason": "spam"}),
        _ => return None,
    })
}

/// Replaces the `index`-th string of `value` (modulo their number) with `text`.
fn replace_a_string(value: &mut Value, index: usize, text: &str) {
    fn strings(value: &mut Value) -> Vec<&mut Value> {
        match value {
            Value::String(_) => vec![value],
            Value::Array(items) => items.iter_mut().flat_map(strings).collect(),
            Value::Object(fields) => fields.values_mut().flat_map(strings).collect(),
            _ => Vec::new(),
        }
    }
    let mut found = strings(value);
    if !found.is_empty() {
        let count = found.len();
        *found[index % count] = Value::String(text.to_owned());
    }
}

#[derive(Debug, Clone)]
enum Body {
    Json(Value),
    /// The route's valid example with one string replaced by this text.
    Mutated(usize, String),
    Bytes(Vec<u8>),
    Empty,
}

fn body() -> impl proptest::strategy::Strategy<Value = Body> {
    use proptest::prelude::*;
    prop_oneof![
        4 => json_value().prop_map(Body::Json),
        3 => (any::<usize>(), text_with_controls()).prop_map(|(i, t)| Body::Mutated(i, t)),
        1 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Body::Bytes),
        1 => Just(Body::Empty),
    ]
}

#[test]
fn malformed_input_at_every_route_never_gets_a_5xx() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _context = runtime.enter();
    let app = runtime.block_on(TestApp::spawn());
    let (_, staff) = runtime.block_on(app.token(Role::Staff));
    let (_, customer) = runtime.block_on(app.token(Role::Customer));
    runtime.block_on(app.create_product(&staff, "MUG-1", 1200));
    let (_, _, cart) = runtime.block_on(app.send(Method::POST, "/api/carts", None, None));
    let cart_id = cart["cart_id"].as_str().unwrap().to_owned();
    let cart_token = cart["cart_token"].as_str().unwrap().to_owned();

    let routes = command_api::routes::ROUTES;
    let strategy = (
        0..routes.len(),
        0..4usize,
        body(),
        prop_oneof![
            Just("application/json"),
            Just("text/plain"),
            Just("application/json; charset=utf-8"),
            Just("")
        ],
        prop_oneof![
            Just(cart_id.clone()),
            Just(Uuid::new_v4().to_string()),
            "[a-zA-Z0-9%._~-]{0,40}"
        ],
        prop_oneof![Just("MUG-1".to_owned()), "[a-zA-Z0-9%._~-]{0,70}"],
        proptest::option::of("[ -~]{0,80}"),
        proptest::option::of(prop_oneof![Just(cart_token.clone()), "[ -~]{0,140}"]),
    );
    let config = ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    runner
        .run(
            &strategy,
            |(route, auth, body, content_type, id, sku, idempotency_key, held_cart_token)| {
                let route = &routes[route];
                let path = route.path.replace("{id}", &id).replace("{sku}", &sku);
                let method: Method = route.method.to_uppercase().parse().unwrap();
                let token = match auth {
                    0 => None,
                    1 => Some(staff.as_str()),
                    2 => Some(customer.as_str()),
                    _ => Some("garbage"),
                };
                let mut request = app.request(method, &path, token);
                if !content_type.is_empty() {
                    request = request.header("content-type", content_type);
                }
                if let Some(key) = &idempotency_key {
                    request = request.header("idempotency-key", key.as_str());
                }
                if let Some(held) = &held_cart_token {
                    request = request.header("cart-token", held.as_str());
                }
                request = match &body {
                    Body::Json(value) => request.body(value.to_string()),
                    Body::Mutated(index, text) => {
                        let mut value = example_body(route.path).unwrap_or_else(|| json!({}));
                        replace_a_string(&mut value, *index, text);
                        request.body(value.to_string())
                    }
                    Body::Bytes(bytes) => request.body(bytes.clone()),
                    Body::Empty => request,
                };
                let response = runtime.block_on(request.send());
                let response = match response {
                    Ok(response) => response,
                    // a path the HTTP client itself refuses to send is not a server failure
                    Err(error) if error.is_builder() => return Ok(()),
                    Err(error) => panic!("request failed: {error}"),
                };
                let status = response.status();
                let text = runtime.block_on(response.text()).unwrap_or_default();
                prop_assert!(
                    !status.is_server_error(),
                    "{} {path} with {body:?} ({content_type}) → {status}: {text}",
                    route.method
                );
                Ok(())
            },
        )
        .unwrap();
    runtime.block_on(app.finish());
}
