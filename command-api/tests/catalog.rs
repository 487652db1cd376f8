//! The catalog's staff routes over real HTTP against the real PostgreSQL: prices per currency
//! (a cart priced in its own currency), with who may call them and what bad input gets.

mod support;
use support::assert_problem;

use accounts::{passwords, tokens::Secret, Role};
use command_api::{ApiConfig, AppState};
use eventlog::testing::TestDatabase;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

struct TestApp {
    base: String,
    client: Client,
    state: AppState,
    db: TestDatabase,
}

impl TestApp {
    async fn spawn() -> Self {
        let db = TestDatabase::create(
            eventlog::migrate::MIGRATIONS
                .iter()
                .chain(command_api::MIGRATIONS),
            8,
        )
        .await;
        let state = AppState::new(
            db.pool.clone(),
            &Secret::new(vec![42; 32]).unwrap(),
            ApiConfig::default(),
        );
        let support::Served {
            base,
            client,
            state,
            db,
        } = support::serve(db, state).await;
        Self {
            base,
            client,
            state,
            db,
        }
    }

    async fn token(&self, role: Role) -> String {
        let email = format!("{}@example.com", Uuid::new_v4().simple());
        let hash = passwords::hash("a long password".into()).await.unwrap();
        let id = accounts::create(&self.db.pool, &email, "Someone", &hash, role)
            .await
            .unwrap();
        self.state.tokens.issue(id, role).unwrap()
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut builder = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            builder = builder.bearer_auth(token);
        }
        if let Some(body) = body {
            builder = builder.json(&body);
        }
        let response = builder.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn create_product(&self, staff: &str, sku: &str, eur: i64) {
        let (status, body) = self
            .send(
                Method::POST,
                "/api/products",
                Some(staff),
                Some(
                    json!({"sku": sku, "name": format!("Product {sku}"), "category": "tests",
                            "price": {"amount_minor": eur, "currency": "EUR"}}),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    async fn set_price(
        &self,
        token: &str,
        sku: &str,
        currency: &str,
        amount: i64,
    ) -> (StatusCode, Value) {
        self.send(
            Method::PUT,
            &format!("/api/products/{sku}/prices/{currency}"),
            Some(token),
            Some(json!({"amount_minor": amount})),
        )
        .await
    }

    /// A customer's new cart in `currency`; its id.
    async fn cart(&self, customer: &str, currency: &str) -> String {
        let (status, body) = self
            .send(
                Method::POST,
                "/api/carts",
                Some(customer),
                Some(json!({"currency": currency})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["cart_id"].as_str().unwrap().to_owned()
    }

    async fn add(&self, customer: &str, cart: &str, sku: &str) -> (StatusCode, Value) {
        self.send(
            Method::POST,
            &format!("/api/carts/{cart}/items"),
            Some(customer),
            Some(json!({"sku": sku, "quantity": 1})),
        )
        .await
    }

    /// The unit prices of a cart's lines, as the cart stream holds them.
    async fn line_prices(&self, cart: &str) -> Vec<(String, i64, String)> {
        let cart = self.state.stores.carts.load(cart).await.unwrap().aggregate;
        cart.lines()
            .iter()
            .map(|line| {
                (
                    line.sku.to_string(),
                    line.unit_price.amount_minor,
                    line.unit_price.currency.to_string(),
                )
            })
            .collect()
    }

    async fn on_hand(&self, sku: &str) -> u64 {
        let inventory = self
            .state
            .stores
            .inventory
            .load(sku)
            .await
            .unwrap()
            .aggregate;
        inventory.on_hand()
    }

    async fn finish(self) {
        self.db.drop().await;
    }
}

const ADDRESS: &str = r#"{"name": "Ann", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"}"#;

#[tokio::test]
async fn a_cart_is_priced_in_its_own_currency_from_the_price_list() {
    let app = TestApp::spawn().await;
    let staff = app.token(Role::Staff).await;
    let customer = app.token(Role::Customer).await;
    app.create_product(&staff, "MUG-1", 1299).await;
    let (status, body) = app.set_price(&staff, "MUG-1", "USD", 1500).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["position"].is_string(), "{body}");

    let eur_cart = app.cart(&customer, "EUR").await;
    let usd_cart = app.cart(&customer, "USD").await;
    let gbp_cart = app.cart(&customer, "GBP").await;
    assert_eq!(
        app.add(&customer, &eur_cart, "MUG-1").await.0,
        StatusCode::OK
    );
    assert_eq!(
        app.add(&customer, &usd_cart, "MUG-1").await.0,
        StatusCode::OK
    );
    assert_eq!(
        app.line_prices(&eur_cart).await,
        vec![("MUG-1".into(), 1299, "EUR".into())]
    );
    assert_eq!(
        app.line_prices(&usd_cart).await,
        vec![("MUG-1".into(), 1500, "USD".into())]
    );
    let (status, body) = app.add(&customer, &gbp_cart, "MUG-1").await;
    assert_problem(status, &body, StatusCode::CONFLICT, "no_price_in_currency");
    assert!(app.line_prices(&gbp_cart).await.is_empty());

    // the USD price changes: the checkout prices the USD cart at the new one
    let (status, body) = app.set_price(&staff, "MUG-1", "USD", 1450).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // setting the same price again writes nothing
    let (status, body) = app.set_price(&staff, "MUG-1", "USD", 1450).await;
    assert_eq!((status, &body["position"]), (StatusCode::OK, &Value::Null));
    let address: Value = serde_json::from_str(ADDRESS).unwrap();
    let (status, body) = app
        .send(
            Method::POST,
            &format!("/api/carts/{usd_cart}/checkout"),
            Some(&customer),
            Some(json!({"shipping_address": address, "payment_method": "pm_card_visa"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        app.line_prices(&usd_cart).await,
        vec![("MUG-1".into(), 1450, "USD".into())]
    );

    // without a USD price a USD cart can neither take the product nor check it out
    let (status, body) = app
        .send(
            Method::DELETE,
            "/api/products/MUG-1/prices/USD",
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let another_usd_cart = app.cart(&customer, "USD").await;
    let (status, body) = app.add(&customer, &another_usd_cart, "MUG-1").await;
    assert_problem(status, &body, StatusCode::CONFLICT, "no_price_in_currency");
    // the base price still prices an EUR cart, and setting it reprices the product
    let (status, body) = app.set_price(&staff, "MUG-1", "EUR", 1199).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let product = app
        .state
        .stores
        .products
        .load("MUG-1")
        .await
        .unwrap()
        .aggregate;
    let details = product.details().unwrap();
    assert_eq!(details.price.amount_minor, 1199);
    assert!(details.other_prices.is_empty());
    app.finish().await;
}

#[tokio::test]
async fn prices_are_staff_only_and_bad_input_is_named() {
    let app = TestApp::spawn().await;
    let staff = app.token(Role::Staff).await;
    let customer = app.token(Role::Customer).await;
    app.create_product(&staff, "MUG-1", 1299).await;

    let (status, body) = app.set_price(&customer, "MUG-1", "USD", 1500).await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app
        .send(Method::DELETE, "/api/products/MUG-1/prices/USD", None, None)
        .await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");

    let (status, body) = app.set_price(&staff, "MUG-1", "usd", 1500).await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert!(
        body["detail"].as_str().unwrap().contains("currency"),
        "{body}"
    );
    let (status, body) = app.set_price(&staff, "MUG-1", "USD", 0).await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert!(body["detail"].as_str().unwrap().contains("price"), "{body}");
    let (status, body) = app
        .send(
            Method::PUT,
            "/api/products/MUG-1/prices/USD",
            Some(&staff),
            Some(json!({"amount_minor": 10, "currency": "USD"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = app
        .send(
            Method::DELETE,
            "/api/products/MUG-1/prices/EUR",
            Some(&staff),
            None,
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert!(
        body["detail"].as_str().unwrap().contains("base price"),
        "{body}"
    );
    let (status, body) = app.set_price(&staff, "NOPE-1", "USD", 1500).await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");
    let written: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type IN ('ProductPriceSet', 'ProductPriceRemoved')",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(written, 0, "no refused command wrote anything");
    app.finish().await;
}

#[tokio::test]
async fn a_variant_is_its_own_sku_with_its_own_stock_and_prices() {
    let app = TestApp::spawn().await;
    let staff = app.token(Role::Staff).await;
    let customer = app.token(Role::Customer).await;
    app.create_product(&staff, "TEE-1", 1999).await;
    app.set_price(&staff, "TEE-1", "USD", 2199).await;
    let variant = |sku: &str, size: &str, colour: &str| json!({"sku": sku, "option_values": {"size": size, "colour": colour}});
    // no options yet: no variants
    let (status, body) = app
        .send(
            Method::POST,
            "/api/products/TEE-1/variants",
            Some(&staff),
            Some(variant("TEE-1-M-RED", "M", "red")),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    let options = json!({"options": [{"name": "size", "values": ["S", "M", "L"]},
                                     {"name": "colour", "values": ["red", "blue"]}]});
    let (status, body) = app
        .send(
            Method::PUT,
            "/api/products/TEE-1/options",
            Some(&customer),
            Some(options.clone()),
        )
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app
        .send(
            Method::PUT,
            "/api/products/TEE-1/options",
            Some(&staff),
            Some(options),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = app
        .send(
            Method::POST,
            "/api/products/TEE-1/variants",
            Some(&staff),
            Some(variant("TEE-1-M-RED", "M", "red")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["sku"], "TEE-1-M-RED");
    // a retry changes nothing and answers the same
    let (status, body) = app
        .send(
            Method::POST,
            "/api/products/TEE-1/variants",
            Some(&staff),
            Some(variant("TEE-1-M-RED", "M", "red")),
        )
        .await;
    assert_eq!(
        (status, &body["position"]),
        (StatusCode::CREATED, &Value::Null),
        "{body}"
    );
    let stored = app
        .state
        .stores
        .products
        .load("TEE-1-M-RED")
        .await
        .unwrap()
        .aggregate;
    let details = stored.details().unwrap();
    assert_eq!(details.name, "Product TEE-1 (M / red)");
    assert_eq!(details.category, "tests");
    // the parent's prices, every currency
    let prices: Vec<(i64, String)> = details
        .prices()
        .iter()
        .map(|p| (p.amount_minor, p.currency.to_string()))
        .collect();
    assert_eq!(prices, vec![(1999, "EUR".into()), (2199, "USD".into())]);
    assert_eq!(details.variant_of.as_ref().unwrap().0.as_str(), "TEE-1");

    // the same combination, a value the option lacks, a SKU that is another product
    let (status, body) = app
        .send(
            Method::POST,
            "/api/products/TEE-1/variants",
            Some(&staff),
            Some(variant("TEE-1-OTHER", "M", "red")),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    assert!(
        body["detail"].as_str().unwrap().contains("TEE-1-M-RED"),
        "{body}"
    );
    let (status, body) = app
        .send(
            Method::POST,
            "/api/products/TEE-1/variants",
            Some(&staff),
            Some(variant("TEE-1-XL-RED", "XL", "red")),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert!(body["detail"].as_str().unwrap().contains("size"), "{body}");
    app.create_product(&staff, "MUG-1", 999).await;
    let (status, body) = app
        .send(
            Method::POST,
            "/api/products/TEE-1/variants",
            Some(&staff),
            Some(variant("MUG-1", "S", "blue")),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");
    let parent = app
        .state
        .stores
        .products
        .load("TEE-1")
        .await
        .unwrap()
        .aggregate;
    assert_eq!(
        parent.details().unwrap().variants.len(),
        1,
        "refusals left the parent alone"
    );

    // a variant has its own stock: received, put in a cart at its own price, checked out
    let (status, body) = app
        .send(
            Method::POST,
            "/api/inventory/TEE-1-M-RED/receive",
            Some(&staff),
            Some(json!({"quantity": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .send(
            Method::PUT,
            "/api/products/TEE-1-M-RED/prices/USD",
            Some(&staff),
            Some(json!({"amount_minor": 2399})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cart = app.cart(&customer, "USD").await;
    assert_eq!(
        app.add(&customer, &cart, "TEE-1-M-RED").await.0,
        StatusCode::OK
    );
    assert_eq!(
        app.line_prices(&cart).await,
        vec![("TEE-1-M-RED".into(), 2399, "USD".into())]
    );
    let address: Value = serde_json::from_str(ADDRESS).unwrap();
    let (status, body) = app
        .send(
            Method::POST,
            &format!("/api/carts/{cart}/checkout"),
            Some(&customer),
            Some(json!({"shipping_address": address, "payment_method": "pm_card_visa"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(app.on_hand("TEE-1-M-RED").await, 2);
    assert_eq!(
        app.on_hand("TEE-1").await,
        0,
        "the parent's stock is its own"
    );
    app.finish().await;
}

#[tokio::test]
async fn categories_form_a_tree_that_never_gets_a_cycle() {
    let app = TestApp::spawn().await;
    let staff = app.token(Role::Staff).await;
    let customer = app.token(Role::Customer).await;
    let create = |slug: &str, parent: Option<&str>| json!({"slug": slug, "name": slug.to_uppercase(), "parent": parent});
    for (slug, parent) in [
        ("home", None),
        ("kitchen", Some("home")),
        ("mugs", Some("kitchen")),
    ] {
        let (status, body) = app
            .send(
                Method::POST,
                "/api/categories",
                Some(&staff),
                Some(create(slug, parent)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["slug"], slug);
    }
    let (status, body) = app
        .send(
            Method::POST,
            "/api/categories",
            Some(&customer),
            Some(create("garden", None)),
        )
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app
        .send(
            Method::POST,
            "/api/categories",
            Some(&staff),
            Some(create("Garden Tools", None)),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert!(
        body["detail"].as_str().unwrap().starts_with("slug:"),
        "{body}"
    );
    let (status, body) = app
        .send(
            Method::POST,
            "/api/categories",
            Some(&staff),
            Some(create("tools", Some("garden"))),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert!(
        body["detail"].as_str().unwrap().starts_with("parent:"),
        "{body}"
    );
    let (status, body) = app
        .send(
            Method::POST,
            "/api/categories",
            Some(&staff),
            Some(create("home", Some("mugs"))),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "conflict");

    // moving home under its own grandchild is a typed error, and changes nothing
    let (status, body) = app
        .send(
            Method::POST,
            "/api/categories/home/move",
            Some(&staff),
            Some(json!({"parent": "mugs"})),
        )
        .await;
    assert_problem(status, &body, StatusCode::CONFLICT, "category_cycle");
    let (status, body) = app
        .send(
            Method::POST,
            "/api/categories/mugs/move",
            Some(&staff),
            Some(json!({"parent": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .send(
            Method::PATCH,
            "/api/categories/mugs",
            Some(&staff),
            Some(json!({"name": "Cups and mugs"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .send(
            Method::PATCH,
            "/api/categories/nope",
            Some(&staff),
            Some(json!({"name": "X"})),
        )
        .await;
    assert_problem(status, &body, StatusCode::NOT_FOUND, "not_found");
    let catalog = app
        .state
        .stores
        .catalog
        .load(domain::catalog::CATALOG_STREAM)
        .await
        .unwrap()
        .aggregate;
    assert_eq!(catalog.path("mugs"), ["mugs"]);
    assert_eq!(catalog.path("kitchen"), ["home", "kitchen"]);
    assert_eq!(catalog.category("mugs").unwrap().name, "Cups and mugs");
    app.finish().await;
}

#[tokio::test]
async fn the_featured_list_names_existing_products_in_order() {
    let app = TestApp::spawn().await;
    let staff = app.token(Role::Staff).await;
    let customer = app.token(Role::Customer).await;
    app.create_product(&staff, "MUG-1", 999).await;
    app.create_product(&staff, "CUP-1", 499).await;
    let featured = |skus: &[&str]| json!({"skus": skus});
    let (status, body) = app
        .send(
            Method::PUT,
            "/api/featured-products",
            Some(&customer),
            Some(featured(&["MUG-1"])),
        )
        .await;
    assert_problem(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = app
        .send(
            Method::PUT,
            "/api/featured-products",
            Some(&staff),
            Some(featured(&["MUG-1", "NOPE-1"])),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    assert!(
        body["detail"].as_str().unwrap().starts_with("skus[1]:"),
        "{body}"
    );
    let (status, body) = app
        .send(
            Method::PUT,
            "/api/featured-products",
            Some(&staff),
            Some(featured(&["CUP-1", "CUP-1"])),
        )
        .await;
    assert_problem(
        status,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    );
    let (status, body) = app
        .send(
            Method::PUT,
            "/api/featured-products",
            Some(&staff),
            Some(featured(&["CUP-1", "MUG-1"])),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["skus"], json!(["CUP-1", "MUG-1"]));
    let catalog = app
        .state
        .stores
        .catalog
        .load(domain::catalog::CATALOG_STREAM)
        .await
        .unwrap()
        .aggregate;
    let listed: Vec<&str> = catalog.featured().iter().map(|sku| sku.as_str()).collect();
    assert_eq!(listed, ["CUP-1", "MUG-1"]);
    app.finish().await;
}
