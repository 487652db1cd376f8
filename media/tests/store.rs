//! One scenario against every backend of [`ImageStore`]: a local directory, and S3 as spoken by
//! an S3-compatible server this test starts itself (moto's `moto_server`, installed by
//! `scripts/setup.sh` into the cache; `SHOP_S3_TEST_SERVER_BIN` overrides where it is). An
//! upload stores the original and its thumbnails, reads back byte for byte, is served over HTTP
//! with its content type, and is deleted.

use std::io::Cursor;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use media::{keys_of, original_key, thumbnail_key, ImageFormat, ImageStore, S3Settings};

fn png(width: u32, height: u32) -> Bytes {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x + y) % 239) as u8])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    Bytes::from(out)
}

async fn scenario(store: ImageStore) {
    let bytes = png(900, 300);
    let stored = store.upload(bytes.clone()).await.unwrap();
    assert_eq!((stored.width, stored.height), (900, 300));
    assert_eq!(stored.format, ImageFormat::Png);

    // the original byte for byte, and thumbnails of the promised widths
    let original = store
        .get(&original_key(&stored.id, stored.format))
        .await
        .unwrap()
        .expect("the original is stored");
    assert_eq!(original, bytes);
    for (width, height) in [(256, 85), (768, 256)] {
        let key = thumbnail_key(&stored.id, stored.format, width);
        let thumbnail = store.get(&key).await.unwrap().expect(&key);
        let decoded = image::load_from_memory(&thumbnail).unwrap();
        assert_eq!(
            (decoded.width(), decoded.height()),
            (width, height),
            "{key}"
        );
    }

    // the same upload again: the same id, nothing else
    let again = store.upload(bytes.clone()).await.unwrap();
    assert_eq!(again, stored);

    // served over HTTP with its type; unknown and malformed keys are 404s
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = media::http::router(store.clone());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let client = reqwest::Client::new();
    let key = original_key(&stored.id, stored.format);
    let response = client
        .get(format!("{base}/media/{key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert!(response.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert_eq!(response.bytes().await.unwrap(), bytes);
    for missing in [
        format!("images/{}/original.png", "0".repeat(64)),
        "images/../../etc/passwd".to_owned(),
        "whatever.png".to_owned(),
    ] {
        let response = client
            .get(format!("{base}/media/{missing}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{missing}");
    }
    server.abort();

    // deleted: every key gone
    store.delete(&stored.id, stored.format).await.unwrap();
    for key in keys_of(&stored.id, stored.format) {
        assert_eq!(store.get(&key).await.unwrap(), None, "{key}");
    }
    // deleting again is not an error
    store.delete(&stored.id, stored.format).await.unwrap();
}

#[tokio::test]
async fn local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::local(&dir.path().join("media")).unwrap();
    scenario(store).await;
}

#[tokio::test]
async fn in_memory() {
    scenario(ImageStore::in_memory()).await;
}

/// `moto_server` on a free port of its own, killed on drop.
struct S3Server {
    child: Child,
    endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3_server_binary() -> String {
    std::env::var("SHOP_S3_TEST_SERVER_BIN").unwrap_or_else(|_| {
        let cache = std::env::var("SHOP_CACHE_DIR").unwrap_or_else(|_| {
            format!("{}/.cache/shop", std::env::var("HOME").unwrap_or_default())
        });
        format!("{cache}/moto-5.2.5/bin/moto_server")
    })
}

async fn start_s3_server() -> S3Server {
    let binary = s3_server_binary();
    assert!(
        std::path::Path::new(&binary).exists(),
        "no S3 test server at {binary}: run scripts/setup.sh (it installs moto into the cache)"
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{binary}: {e}"));
    let server = S3Server {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if client.get(&server.endpoint).send().await.is_ok() {
            return server;
        }
        assert!(Instant::now() < deadline, "moto_server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn s3_compatible_server() {
    let server = start_s3_server().await;
    // the bucket (object_store does not create buckets; the test server takes unsigned calls)
    let created = reqwest::Client::new()
        .put(format!("{}/shop-media", server.endpoint))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    let store = ImageStore::s3(&S3Settings {
        bucket: "shop-media".into(),
        region: Some("us-east-1".into()),
        endpoint: Some(server.endpoint.clone()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        allow_http: true,
    })
    .unwrap();
    scenario(store.clone()).await;

    // the objects really went to the server: one more upload is listed by its S3 API
    let stored = store.upload(png(40, 40)).await.unwrap();
    let listing = reqwest::Client::new()
        .get(format!("{}/shop-media?list-type=2", server.endpoint))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for key in keys_of(&stored.id, stored.format) {
        assert!(listing.contains(&key), "{key} not in {listing}");
    }
}
