//! `products` (search, typo tolerance, filters, facets, sort, pagination) and `product(sku)`.

use domain::cart::CartOwner;
use domain::{CartCommand, Currency, ProductCommand, Sku};
use serde_json::{json, Value};

use uuid::Uuid;

use crate::harness::{assert_snapshot, code, eur, meta, no_errors, qty, Harness};

const PRODUCTS: &str = "query($first: Int, $after: String, $query: String, $filter: ProductFilter, $sort: ProductSort) {
  products(first: $first, after: $after, query: $query, filter: $filter, sort: $sort) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { sku name category price { amountMinor currency } inStock } }
    facets {
      categories { category count }
      priceBands { band minMinor maxMinor count }
      inStock outOfStock
    }
  }
}";

fn skus(response: &Value) -> Vec<String> {
    response["data"]["products"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["sku"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn search_finds_typos_counts_facets_sorts_and_pages() {
    let h = Harness::start().await;
    h.catalog().await;
    h.project().await;

    // a typo finds the headphones
    let typo = h.gql(None, PRODUCTS, json!({"query": "hedphones"})).await;
    no_errors(&typo);
    assert_eq!(skus(&typo), ["HP-1"]);
    assert_snapshot("products_typo_search", &typo);

    // everything: facets over all three
    let all = h.gql(None, PRODUCTS, json!({"sort": "PRICE_ASC"})).await;
    no_errors(&all);
    assert_eq!(skus(&all), ["MUG-1", "SPK-1", "HP-1"]);
    let facets = &all["data"]["products"]["facets"];
    assert_eq!(
        facets["categories"],
        json!([{"category": "audio", "count": 2}, {"category": "home", "count": 1}])
    );
    assert_eq!(facets["inStock"], 2);
    assert_eq!(facets["outOfStock"], 1);
    let bands: Vec<(String, i64)> = facets["priceBands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["band"].as_str().unwrap().to_owned(),
                b["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        bands,
        [
            ("UNDER_10".to_owned(), 0),
            ("FROM_10_TO_25".to_owned(), 1),
            ("FROM_25_TO_50".to_owned(), 1),
            ("FROM_50_TO_100".to_owned(), 0),
            ("FROM_100_TO_250".to_owned(), 1),
            ("FROM_250".to_owned(), 0),
        ]
    );

    // filters narrow the hits and the facets alike
    let audio_in_stock = h
        .gql(
            None,
            PRODUCTS,
            json!({"filter": {"category": "audio", "inStock": true}}),
        )
        .await;
    assert_eq!(skus(&audio_in_stock), ["HP-1"]);
    assert_eq!(
        audio_in_stock["data"]["products"]["facets"]["outOfStock"],
        0
    );
    let cheap = h
        .gql(
            None,
            PRODUCTS,
            json!({"filter": {"priceMax": 5_000}, "sort": "PRICE_DESC"}),
        )
        .await;
    assert_eq!(skus(&cheap), ["SPK-1", "MUG-1"]);

    // pages: two, then the last one, then past the end
    let page1 = h
        .gql(None, PRODUCTS, json!({"first": 2, "sort": "PRICE_ASC"}))
        .await;
    assert_eq!(skus(&page1), ["MUG-1", "SPK-1"]);
    let info = &page1["data"]["products"]["pageInfo"];
    assert_eq!(info["hasNextPage"], true);
    assert_eq!(info["hasPreviousPage"], false);
    assert_eq!(page1["data"]["products"]["totalCount"], 3);
    let after = info["endCursor"].as_str().unwrap().to_owned();
    let page2 = h
        .gql(
            None,
            PRODUCTS,
            json!({"first": 2, "after": after, "sort": "PRICE_ASC"}),
        )
        .await;
    assert_eq!(skus(&page2), ["HP-1"]);
    let info = &page2["data"]["products"]["pageInfo"];
    assert_eq!(info["hasNextPage"], false);
    assert_eq!(info["hasPreviousPage"], true);
    let last = info["endCursor"].as_str().unwrap().to_owned();
    let past = h
        .gql(
            None,
            PRODUCTS,
            json!({"first": 2, "after": last, "sort": "PRICE_ASC"}),
        )
        .await;
    assert!(skus(&past).is_empty());
    assert_eq!(
        past["data"]["products"]["pageInfo"]["endCursor"],
        Value::Null
    );

    // no match: an empty page, zero counts
    let none = h.gql(None, PRODUCTS, json!({"query": "zzzzqqqq"})).await;
    no_errors(&none);
    assert!(skus(&none).is_empty());
    assert_eq!(none["data"]["products"]["totalCount"], 0);
    assert_eq!(none["data"]["products"]["pageInfo"]["hasNextPage"], false);

    // a page of zero still counts
    let zero = h.gql(None, PRODUCTS, json!({"first": 0})).await;
    assert!(skus(&zero).is_empty());
    assert_eq!(zero["data"]["products"]["totalCount"], 3);

    // bad arguments are typed errors
    for (variables, expected) in [
        (json!({"after": "not-a-cursor"}), "validation"),
        (json!({"after": "6576656e743a31"}), "validation"), // another connection's cursor
        // crafted offset cursors: the largest offset (the next page would start past it), and
        // one just past the deepest page
        (
            json!({"after": hex::encode(format!("offset:{}", usize::MAX))}),
            "validation",
        ),
        (
            json!({"after": hex::encode(format!("offset:{}", usize::MAX - 1))}),
            "validation",
        ),
        (json!({"after": hex::encode("offset:10000")}), "validation"),
        (json!({"first": 101}), "validation"),
        (json!({"first": -1}), "validation"),
        (
            json!({"filter": {"priceMin": 500, "priceMax": 100}}),
            "validation",
        ),
        (json!({"sort": "CHEAPEST"}), "validation"),
    ] {
        let response = h.gql(None, PRODUCTS, variables.clone()).await;
        assert_eq!(code(&response), expected, "{variables}: {response}");
        assert_eq!(response["data"], Value::Null, "{response}");
    }
    h.drop().await;
}

#[tokio::test]
async fn product_by_sku_and_a_price_change_shows_after_projection() {
    let h = Harness::start().await;
    h.catalog().await;
    h.project().await;
    let query = "query($sku: String!) { product(sku: $sku) {
        sku name description category price { amountMinor currency } inStock available
        discontinued createdAt } }";
    let product = h.gql(None, query, json!({"sku": "HP-1"})).await;
    no_errors(&product);
    assert_eq!(product["data"]["product"]["available"], 5);
    assert_eq!(
        product["data"]["product"]["description"],
        "Studio headphones: a fine audio product"
    );
    assert_snapshot("product_by_sku", &product);
    let missing = h.gql(None, query, json!({"sku": "NOPE-1"})).await;
    no_errors(&missing);
    assert_eq!(missing["data"]["product"], Value::Null);

    // a reprice reaches the search results once the index has passed its position
    let receipt = h
        .stores
        .products
        .execute(
            "HP-1",
            ProductCommand::Reprice { price: eur(9_900) },
            &meta(),
        )
        .await
        .unwrap();
    let position = receipt.position.unwrap().to_string();
    let searched = "query($p: String) { products(query: \"headphones\", position: $p) {
        edges { node { sku price { amountMinor } description available } } } }";
    let (before, ()) = tokio::join!(h.gql(None, searched, json!({"p": position})), async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        h.project().await;
    });
    no_errors(&before);
    let node = &before["data"]["products"]["edges"][0]["node"];
    assert_eq!(node["price"]["amountMinor"], 9_900, "{before}");
    // fields only the catalog read model holds are filled in for search hits
    assert_eq!(node["available"], 5);
    h.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn popular_products_rank_by_units_wanted_from_redis() {
    let h = Harness::start().await;
    h.catalog().await;
    // two headphones in a cart (the harness's cart), three mugs in another
    h.cart(None).await;
    let mugs = Uuid::new_v4().to_string();
    for command in [
        CartCommand::Create {
            owner: CartOwner::Guest,
            currency: Currency::parse("EUR").unwrap(),
            created_at: chrono::Utc::now(),
        },
        CartCommand::AddItem {
            sku: Sku::parse("MUG-1".to_owned()).unwrap(),
            quantity: qty(3),
            unit_price: eur(1_200),
        },
    ] {
        h.stores
            .carts
            .execute(&mugs, command, &meta())
            .await
            .unwrap();
    }
    h.project().await;
    let query = "query($first: Int) { popularProducts(first: $first) {
        sku name category price { amountMinor currency } discontinued demand } }";
    let popular = h.gql(None, query, json!({})).await;
    no_errors(&popular);
    let ranked: Vec<(&str, i64)> = popular["data"]["popularProducts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["sku"].as_str().unwrap(), p["demand"].as_i64().unwrap()))
        .collect();
    // the speaker was never wanted: no document
    assert_eq!(ranked, vec![("MUG-1", 3), ("HP-1", 2)]);
    assert_eq!(popular["data"]["popularProducts"][0]["name"], "Coffee mug");
    assert_eq!(
        popular["data"]["popularProducts"][0]["price"]["amountMinor"],
        1_200
    );
    let first = h.gql(None, query, json!({"first": 1})).await;
    assert_eq!(
        first["data"]["popularProducts"].as_array().unwrap().len(),
        1
    );
    let none = h.gql(None, query, json!({"first": 0})).await;
    assert_eq!(none["data"]["popularProducts"], json!([]));
    let refused = h.gql(None, query, json!({"first": 101})).await;
    assert_eq!(code(&refused), "validation");
    h.drop().await;
}

#[tokio::test]
async fn a_product_lists_its_prices_per_currency() {
    let h = Harness::start().await;
    h.catalog().await;
    let usd = |amount| domain::Money::new(amount, Currency::parse("USD").unwrap());
    let gbp = |amount| domain::Money::new(amount, Currency::parse("GBP").unwrap());
    for command in [
        ProductCommand::SetPrice { price: usd(1_500) },
        ProductCommand::SetPrice { price: gbp(1_100) },
        ProductCommand::SetPrice { price: usd(1_400) },
    ] {
        h.stores
            .products
            .execute("MUG-1", command, &meta())
            .await
            .unwrap();
    }
    h.project().await;
    let query = "query($sku: String!) { product(sku: $sku) {
        prices { amountMinor currency }
        usd: priceIn(currency: \"USD\") { amountMinor }
        eur: priceIn(currency: \"EUR\") { amountMinor }
        jpy: priceIn(currency: \"JPY\") { amountMinor } } }";
    let answer = h.gql(None, query, json!({"sku": "MUG-1"})).await;
    no_errors(&answer);
    let product = &answer["data"]["product"];
    assert_eq!(
        product["prices"],
        json!([
            {"amountMinor": 1_200, "currency": "EUR"},
            {"amountMinor": 1_100, "currency": "GBP"},
            {"amountMinor": 1_400, "currency": "USD"},
        ])
    );
    assert_eq!(product["usd"]["amountMinor"], 1_400);
    assert_eq!(product["eur"]["amountMinor"], 1_200);
    assert_eq!(product["jpy"], Value::Null);

    // a removed price is gone; search hits carry the price list too
    h.stores
        .products
        .execute(
            "MUG-1",
            ProductCommand::RemovePrice {
                currency: Currency::parse("GBP").unwrap(),
            },
            &meta(),
        )
        .await
        .unwrap();
    h.project().await;
    let searched = h
        .gql(
            None,
            "{ products(query: \"mug\") { edges { node { sku prices { amountMinor currency } } } } }",
            json!({}),
        )
        .await;
    no_errors(&searched);
    assert_eq!(
        searched["data"]["products"]["edges"][0]["node"]["prices"],
        json!([
            {"amountMinor": 1_200, "currency": "EUR"},
            {"amountMinor": 1_400, "currency": "USD"},
        ])
    );

    // a malformed currency is a typed error
    let bad = h
        .gql(
            None,
            "{ product(sku: \"MUG-1\") { priceIn(currency: \"usd\") { amountMinor } } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&bad), "validation", "{bad}");
    h.drop().await;
}

#[tokio::test]
async fn a_product_shows_its_options_and_variants() {
    let h = Harness::start().await;
    h.product("TEE-1", "T-shirt", "clothes", 1_999, 0).await;
    let tee = Sku::parse("TEE-1".to_owned()).unwrap();
    let option = |name: &str, values: &[&str]| domain::product::ProductOption {
        name: name.into(),
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    };
    h.stores
        .products
        .execute(
            "TEE-1",
            ProductCommand::DeclareOptions {
                options: vec![
                    option("size", &["S", "M"]),
                    option("colour", &["red", "blue"]),
                ],
            },
            &meta(),
        )
        .await
        .unwrap();
    for (sku, size) in [("TEE-1-S", "S"), ("TEE-1-M", "M")] {
        let option_values: domain::product::OptionValues = [
            ("size".to_owned(), size.to_owned()),
            ("colour".to_owned(), "red".to_owned()),
        ]
        .into();
        h.stores
            .products
            .execute(
                "TEE-1",
                ProductCommand::AddVariant {
                    sku: Sku::parse(sku.to_owned()).unwrap(),
                    option_values: option_values.clone(),
                },
                &meta(),
            )
            .await
            .unwrap();
        h.stores
            .products
            .execute(
                sku,
                ProductCommand::CreateVariant {
                    sku: Sku::parse(sku.to_owned()).unwrap(),
                    parent: tee.clone(),
                    option_values,
                    name: format!("T-shirt ({size} / red)"),
                    description: String::new(),
                    category: "clothes".into(),
                    prices: vec![eur(2_099)],
                    created_at: chrono::Utc::now(),
                },
                &meta(),
            )
            .await
            .unwrap();
    }
    h.project().await;
    let query = "query($sku: String!) { product(sku: $sku) {
        variantOf options { name values }
        variants { sku name price { amountMinor } variantOf optionValues { name value } } } }";
    let answer = h.gql(None, query, json!({"sku": "TEE-1"})).await;
    no_errors(&answer);
    assert_eq!(
        answer["data"]["product"],
        json!({
            "variantOf": null,
            "options": [{"name": "size", "values": ["S", "M"]},
                        {"name": "colour", "values": ["red", "blue"]}],
            "variants": [
                {"sku": "TEE-1-M", "name": "T-shirt (M / red)", "price": {"amountMinor": 2_099},
                 "variantOf": "TEE-1",
                 "optionValues": [{"name": "colour", "value": "red"}, {"name": "size", "value": "M"}]},
                {"sku": "TEE-1-S", "name": "T-shirt (S / red)", "price": {"amountMinor": 2_099},
                 "variantOf": "TEE-1",
                 "optionValues": [{"name": "colour", "value": "red"}, {"name": "size", "value": "S"}]},
            ]
        })
    );
    let plain = h
        .gql(
            None,
            "{ product(sku: \"TEE-1-S\") { options { name } variants { sku } } }",
            json!({}),
        )
        .await;
    no_errors(&plain);
    assert_eq!(
        plain["data"]["product"],
        json!({"options": [], "variants": []})
    );
    h.drop().await;
}

#[tokio::test]
async fn categories_give_breadcrumbs_subtrees_and_the_featured_list() {
    let h = Harness::start().await;
    // home > kitchen > mugs; products in home and mugs
    h.product("MUG-1", "Coffee mug", "mugs", 1_200, 3).await;
    h.product("LAMP-1", "Lamp", "home", 3_000, 1).await;
    h.product("HP-1", "Headphones", "audio", 12_900, 1).await;
    let create = |slug: &str, parent: Option<&str>| domain::CatalogCommand::CreateCategory {
        slug: slug.into(),
        name: slug.to_uppercase(),
        parent: parent.map(str::to_owned),
    };
    for command in [
        create("home", None),
        create("kitchen", Some("home")),
        create("mugs", Some("kitchen")),
        create("audio", None),
        domain::CatalogCommand::SetFeaturedProducts {
            skus: vec![
                Sku::parse("HP-1".to_owned()).unwrap(),
                Sku::parse("MUG-1".to_owned()).unwrap(),
            ],
        },
    ] {
        h.stores
            .catalog
            .execute(domain::catalog::CATALOG_STREAM, command, &meta())
            .await
            .unwrap();
    }
    h.project().await;
    let query = "query($slug: String!) {
        category(slug: $slug) {
            slug name parentSlug depth
            breadcrumbs { slug }
            children { slug }
            own: products { sku }
            all: products(includeSubcategories: true) { sku }
        }
        categories { slug depth }
        featuredProducts { sku }
    }";
    let answer = h.gql(None, query, json!({"slug": "home"})).await;
    no_errors(&answer);
    assert_eq!(
        answer["data"]["category"],
        json!({"slug": "home", "name": "HOME", "parentSlug": null, "depth": 0,
               "breadcrumbs": [{"slug": "home"}], "children": [{"slug": "kitchen"}],
               "own": [{"sku": "LAMP-1"}], "all": [{"sku": "LAMP-1"}, {"sku": "MUG-1"}]})
    );
    assert_eq!(
        answer["data"]["categories"],
        json!([{"slug": "audio", "depth": 0}, {"slug": "home", "depth": 0},
               {"slug": "kitchen", "depth": 1}, {"slug": "mugs", "depth": 2}])
    );
    assert_eq!(
        answer["data"]["featuredProducts"],
        json!([{"sku": "HP-1"}, {"sku": "MUG-1"}])
    );
    let mugs = h.gql(None, query, json!({"slug": "mugs"})).await;
    no_errors(&mugs);
    assert_eq!(
        mugs["data"]["category"]["breadcrumbs"],
        json!([{"slug": "home"}, {"slug": "kitchen"}, {"slug": "mugs"}])
    );

    // a move reshapes the breadcrumbs of the whole subtree
    let receipt = h
        .stores
        .catalog
        .execute(
            domain::catalog::CATALOG_STREAM,
            domain::CatalogCommand::MoveCategory {
                slug: "kitchen".into(),
                parent: Some("audio".into()),
            },
            &meta(),
        )
        .await
        .unwrap();
    h.project().await;
    let moved = h
        .gql(
            None,
            "query($p: String) { category(slug: \"mugs\", position: $p) { depth breadcrumbs { slug } } }",
            json!({"p": receipt.position.unwrap().to_string()}),
        )
        .await;
    no_errors(&moved);
    assert_eq!(
        moved["data"]["category"],
        json!({"depth": 2, "breadcrumbs": [{"slug": "audio"}, {"slug": "kitchen"}, {"slug": "mugs"}]})
    );
    let missing = h
        .gql(None, "{ category(slug: \"nope\") { slug } }", json!({}))
        .await;
    no_errors(&missing);
    assert_eq!(missing["data"]["category"], Value::Null);
    h.drop().await;
}
