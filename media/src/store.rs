//! [`ImageStore`]: the objects of product images in an `object_store` backend: a local
//! directory (the default), S3 or anything speaking its protocol (production), or memory (tests).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::upload::{prepare, PreparedImage, UploadError, UploadLimits};
use crate::{keys_of, original_key, thumbnail_key, MediaError, Result};

/// Where the S3 objects go. Credentials not given here are taken the way the AWS SDKs take
/// them (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, a web identity token, instance metadata).
#[derive(Clone, Default)]
pub struct S3Settings {
    pub bucket: String,
    /// `None`: `us-east-1` unless `AWS_REGION`/`AWS_DEFAULT_REGION` says otherwise.
    pub region: Option<String>,
    /// An S3-compatible server's URL (MinIO, Ceph, a test server); `None`: AWS.
    pub endpoint: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Allow a plain `http://` endpoint.
    pub allow_http: bool,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id.as_ref().map(|_| "***"))
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// The product images' objects, and the limits of an upload.
#[derive(Clone)]
pub struct ImageStore {
    objects: Arc<dyn ObjectStore>,
    /// What it is, for logs (`local:/var/lib/shop/media`, `s3://bucket`, `memory`).
    description: Arc<str>,
    limits: UploadLimits,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("store", &self.description)
            .field("limits", &self.limits)
            .finish()
    }
}

/// What an image's objects are, once stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredImage {
    pub id: crate::ImageId,
    pub format: crate::ImageFormat,
    pub width: u32,
    pub height: u32,
}

impl ImageStore {
    fn new(objects: Arc<dyn ObjectStore>, description: String) -> Self {
        Self {
            objects,
            description: description.into(),
            limits: UploadLimits::default(),
        }
    }

    /// Objects as files under `dir` (created if missing).
    pub fn local(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| MediaError::Config(format!("{}: {e}", dir.display())))?;
        let dir: PathBuf = dir
            .canonicalize()
            .map_err(|e| MediaError::Config(format!("{}: {e}", dir.display())))?;
        let objects = LocalFileSystem::new_with_prefix(&dir)?;
        Ok(Self::new(
            Arc::new(objects),
            format!("local:{}", dir.display()),
        ))
    }

    /// Objects in an S3 bucket (or an S3-compatible server's).
    pub fn s3(settings: &S3Settings) -> Result<Self> {
        if settings.bucket.is_empty() {
            return Err(MediaError::Config("no S3 bucket given".into()));
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&settings.bucket)
            .with_allow_http(settings.allow_http);
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &settings.endpoint {
            // path-style requests: what S3-compatible servers answer without DNS tricks
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if let Some(key) = &settings.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &settings.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let description = match &settings.endpoint {
            Some(endpoint) => format!("s3://{} at {endpoint}", settings.bucket),
            None => format!("s3://{}", settings.bucket),
        };
        Ok(Self::new(Arc::new(builder.build()?), description))
    }

    /// Objects in this process's memory (tests, and a command API without storage set up).
    pub fn in_memory() -> Self {
        Self::new(Arc::new(InMemory::new()), "memory".into())
    }

    pub fn with_limits(mut self, limits: UploadLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> &UploadLimits {
        &self.limits
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// Checks an upload, makes its thumbnails (on a blocking thread) and stores them all. The
    /// same bytes give the same id and keys, so storing them again changes nothing.
    pub async fn upload(&self, bytes: Bytes) -> Result<StoredImage, StoreUploadError> {
        let limits = self.limits;
        let prepared = tokio::task::spawn_blocking(move || prepare(bytes, &limits))
            .await
            .map_err(|e| StoreUploadError::Store(MediaError::Config(e.to_string())))?
            .map_err(StoreUploadError::Refused)?;
        self.put(&prepared).await.map_err(StoreUploadError::Store)?;
        Ok(StoredImage {
            id: prepared.id,
            format: prepared.format,
            width: prepared.width,
            height: prepared.height,
        })
    }

    /// Stores a prepared image's original and thumbnails (thumbnails first: once the original
    /// is there, every key of the image is).
    pub async fn put(&self, image: &PreparedImage) -> Result<()> {
        for (width, bytes) in &image.thumbnails {
            let key = thumbnail_key(&image.id, image.format, *width);
            self.put_object(&key, bytes.clone()).await?;
        }
        self.put_object(
            &original_key(&image.id, image.format),
            image.original.clone(),
        )
        .await
    }

    async fn put_object(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.objects
            .put(&ObjectPath::from(key), PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    /// An object's bytes, or `None` when there is none under `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let path = ObjectPath::parse(key)
            .map_err(|e| MediaError::Config(format!("not an object key: {e}")))?;
        match self.objects.get(&path).await {
            Ok(found) => Ok(Some(found.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes every object of an image (a missing one is not an error).
    pub async fn delete(&self, id: &crate::ImageId, format: crate::ImageFormat) -> Result<()> {
        for key in keys_of(id, format) {
            match self.objects.delete(&ObjectPath::from(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }
}

/// Why an upload was not stored: refused (the client's fault) or the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreUploadError {
    #[error(transparent)]
    Refused(UploadError),
    #[error(transparent)]
    Store(MediaError),
}
