//! Product images end to end: uploaded through the command API (with the object store in a
//! local directory), projected into the catalog, listed in GraphQL with their URLs, and served
//! from those URLs; refused uploads get their codes (415, 422, 413, 403, 404).

use std::io::Cursor;
use std::net::SocketAddr;

use accounts::tokens::Secret;
use accounts::Role;
use command_api::{ApiConfig, AppState};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{no_errors, Harness};

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 200])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// The command API and the media route on one listener, over the harness's database; its base
/// URL. (The store's directory lives as long as the returned guard.)
async fn commands(h: &Harness) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = media::ImageStore::local(dir.path()).unwrap();
    let state = AppState::new(
        h.db.pool.clone(),
        &Secret::new(vec![42; 32]).unwrap(),
        ApiConfig {
            images: store.clone(),
            ..ApiConfig::default()
        },
    );
    let router = command_api::router(state).merge(media::http::router(store));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (format!("http://{addr}"), dir)
}

async fn upload(
    h: &Harness,
    base: &str,
    sku: &str,
    token: &str,
    alt: &str,
    body: Vec<u8>,
    content_type: &str,
) -> (StatusCode, Value) {
    let response = h
        .client
        .post(format!("{base}/api/products/{sku}/images"))
        .query(&[("alt", alt)])
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

const PRODUCT_IMAGES: &str = "query($sku: String!) {
  product(sku: $sku) {
    images { id url thumbnailUrl(width: 200) large: thumbnailUrl(width: 700) alt width height contentType }
  }
}";

#[tokio::test]
async fn uploaded_images_are_listed_with_urls_that_serve_them() {
    let h = Harness::start().await;
    h.product("MUG-1", "Coffee mug", "home", 1_200, 3).await;
    let (base, _dir) = commands(&h).await;
    let (_, staff) = h.account(Role::Staff).await;

    let original = png(1_000, 500);
    // the type is read from the bytes: a wrong Content-Type does not matter
    let (status, written) = upload(
        &h,
        &base,
        "MUG-1",
        &staff,
        "A mug, from the side",
        original.clone(),
        "application/octet-stream",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{written}");
    assert_eq!(written["content_type"], "image/png");
    assert_eq!(
        (written["width"].as_u64(), written["height"].as_u64()),
        (Some(1_000), Some(500))
    );
    let image_id = written["image_id"].as_str().unwrap().to_owned();
    let second = png(300, 300);
    let (status, _) = upload(&h, &base, "MUG-1", &staff, "", second, "image/png").await;
    assert_eq!(status, StatusCode::CREATED);
    h.project().await;

    let response = h.gql(None, PRODUCT_IMAGES, json!({"sku": "MUG-1"})).await;
    no_errors(&response);
    let images = response["data"]["product"]["images"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(images.len(), 2, "{response}");
    let first = &images[0];
    assert_eq!(first["id"], image_id.as_str(), "shown in upload order");
    assert_eq!(first["alt"], "A mug, from the side");
    assert_eq!(
        (first["width"].as_i64(), first["height"].as_i64()),
        (Some(1_000), Some(500))
    );
    assert_eq!(first["contentType"], "image/png");
    assert_eq!(
        first["url"],
        format!("/media/images/{image_id}/original.png").as_str()
    );
    assert_eq!(
        first["thumbnailUrl"],
        format!("/media/images/{image_id}/w256.png").as_str()
    );
    assert_eq!(
        first["large"],
        format!("/media/images/{image_id}/w768.png").as_str()
    );

    // the URLs serve the bytes
    let get = |path: String| {
        let client = h.client.clone();
        let url = format!("{base}{path}");
        async move { client.get(url).send().await.unwrap() }
    };
    let served = get(first["url"].as_str().unwrap().to_owned()).await;
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()["content-type"], "image/png");
    assert_eq!(served.bytes().await.unwrap().to_vec(), original);
    let thumbnail = get(first["thumbnailUrl"].as_str().unwrap().to_owned()).await;
    let thumbnail = image::load_from_memory(&thumbnail.bytes().await.unwrap()).unwrap();
    assert_eq!((thumbnail.width(), thumbnail.height()), (256, 128));
    let unknown = get(format!("/media/images/{}/original.png", "0".repeat(64))).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    // the search listing carries them too (loaded for the page at once)
    let listing = h
        .gql(
            None,
            "{ products(first: 5) { edges { node { sku images { id } } } } }",
            json!({}),
        )
        .await;
    no_errors(&listing);
    assert_eq!(
        listing["data"]["products"]["edges"][0]["node"]["images"][0]["id"],
        image_id.as_str()
    );

    // uploading the same file again changes nothing
    let (status, again) = upload(&h, &base, "MUG-1", &staff, "", original, "image/png").await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["image_id"], image_id.as_str());
    assert_eq!(again["position"], Value::Null, "no event: already shown");

    // an upload far over the JSON body limit with an Idempotency-Key: kept and replayed
    let noisy = {
        let mut state = 0x2545_f491_u32;
        let image = image::RgbImage::from_fn(400, 400, |_, _| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let [r, g, b, _] = state.to_le_bytes();
            image::Rgb([r, g, b])
        });
        let mut out = Vec::new();
        image::DynamicImage::ImageRgb8(image)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    };
    assert!(noisy.len() > command_api::BODY_LIMIT, "{}", noisy.len());
    let mut answers = Vec::new();
    for _ in 0..2 {
        let response = h
            .client
            .post(format!("{base}/api/products/MUG-1/images"))
            .bearer_auth(&staff)
            .header("idempotency-key", "upload-noise-1")
            .body(noisy.clone())
            .send()
            .await
            .unwrap();
        let replayed = response.headers().contains_key("idempotent-replayed");
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        answers.push((status, replayed, body));
    }
    assert_eq!(answers[0].0, StatusCode::CREATED, "{}", answers[0].2);
    assert_eq!((answers[1].0, answers[1].1), (StatusCode::CREATED, true));
    assert_eq!(answers[0].2, answers[1].2);
    assert_ne!(answers[0].2["position"], Value::Null);

    // taken off the product: gone from GraphQL; a second time it is unknown
    let remove = |id: String| {
        let client = h.client.clone();
        let url = format!("{base}/api/products/MUG-1/images/{id}");
        let staff = staff.clone();
        async move {
            let response = client.delete(url).bearer_auth(staff).send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = remove(image_id.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.project().await;
    let response = h.gql(None, PRODUCT_IMAGES, json!({"sku": "MUG-1"})).await;
    let images = response["data"]["product"]["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{response}");
    assert_ne!(images[0]["id"], image_id.as_str());
    let (status, body) = remove(image_id).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body) = remove("not-a-sha256".into()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("validation"))
    );
    h.drop().await;
}

#[tokio::test]
async fn refused_uploads_get_typed_errors() {
    let h = Harness::start().await;
    h.product("MUG-1", "Coffee mug", "home", 1_200, 3).await;
    let (base, _dir) = commands(&h).await;
    let (_, staff) = h.account(Role::Staff).await;
    let (_, customer) = h.account(Role::Customer).await;
    let whole = png(64, 64);

    let cases: Vec<(&str, Vec<u8>, &str, StatusCode, &str)> = vec![
        ("a GIF", b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x00\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;".to_vec(), "image/gif", StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        ("text calling itself a PNG", b"hello, I am a PNG".to_vec(), "image/png", StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        ("a truncated PNG", whole[..whole.len() / 2].to_vec(), "image/png", StatusCode::UNPROCESSABLE_ENTITY, "validation"),
        ("an empty body", Vec::new(), "image/png", StatusCode::UNPROCESSABLE_ENTITY, "validation"),
        ("more than 5 MiB", vec![0x89; media::MAX_UPLOAD_BYTES + 1], "image/png", StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
    ];
    for (what, body, content_type, status, code) in cases {
        let (got, problem) = upload(&h, &base, "MUG-1", &staff, "", body, content_type).await;
        assert_eq!(
            (got, problem["code"].as_str()),
            (status, Some(code)),
            "{what}: {problem}"
        );
    }

    // a customer may not; an unknown product is a 404; an alt text too long is a 422
    let (status, problem) = upload(
        &h,
        &base,
        "MUG-1",
        &customer,
        "",
        whole.clone(),
        "image/png",
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, problem) =
        upload(&h, &base, "NOPE-1", &staff, "", whole.clone(), "image/png").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let long = "x".repeat(domain::product::ALT_MAX_LEN + 1);
    let (status, problem) = upload(&h, &base, "MUG-1", &staff, &long, whole, "image/png").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("validation"))
    );

    // nothing was added
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'ProductImageAdded'")
            .fetch_one(&h.db.pool)
            .await
            .unwrap();
    assert_eq!(events, 0);
    h.drop().await;
}
