//! Product images: what an upload must be ([`prepare`]: the type read from the bytes, the size,
//! the dimensions, a full decode), the thumbnails made from it, and where their objects live
//! ([`ImageStore`] over the `object_store` crate: a local directory by default, S3 in
//! production), served by [`http::router`] at `/media/{key}`.
//!
//! Objects are content addressed: an image's id is the sha256 of its original bytes, and its
//! objects are `images/<id>/original.<ext>` and `images/<id>/w<width>.<ext>` for each of
//! [`THUMBNAIL_WIDTHS`]. The same upload is the same objects (a re-upload rewrites identical
//! bytes), so objects never change and are cached for good. The product aggregate records which
//! images a product shows; taking an image off a product leaves its objects (another product may
//! show the same bytes).

pub mod http;
pub mod store;
pub mod upload;

pub use domain::{ImageFormat, ImageId};
pub use store::{ImageStore, S3Settings};
pub use upload::{prepare, PreparedImage, UploadError, UploadLimits};

/// The widths of the thumbnails made of every image, in pixels, smallest first. An image
/// narrower than a width gets a copy at its own size under that width's key, so every key
/// exists for every image.
pub const THUMBNAIL_WIDTHS: [u32; 2] = [256, 768];

/// The largest upload accepted, in bytes (the command API's body limit of the upload route).
pub const MAX_UPLOAD_BYTES: usize = 5 * 1024 * 1024;

/// What can go wrong with the object store.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("cannot open the object store: {0}")]
    Config(String),
}

pub type Result<T, E = MediaError> = std::result::Result<T, E>;

/// The key of an image's original.
pub fn original_key(id: &ImageId, format: ImageFormat) -> String {
    format!("images/{id}/original.{}", format.extension())
}

/// The key of an image's thumbnail `width` pixels wide (one of [`THUMBNAIL_WIDTHS`]).
pub fn thumbnail_key(id: &ImageId, format: ImageFormat, width: u32) -> String {
    format!("images/{id}/w{width}.{}", format.extension())
}

/// The thumbnail width that serves a display `width` wide: the smallest that is at least as
/// wide, or the widest there is.
pub fn thumbnail_width_for(width: u32) -> u32 {
    THUMBNAIL_WIDTHS
        .iter()
        .copied()
        .find(|w| *w >= width)
        .unwrap_or(THUMBNAIL_WIDTHS[THUMBNAIL_WIDTHS.len() - 1])
}

/// Every key an image has (original first), e.g. to delete them.
pub fn keys_of(id: &ImageId, format: ImageFormat) -> Vec<String> {
    std::iter::once(original_key(id, format))
        .chain(
            THUMBNAIL_WIDTHS
                .iter()
                .map(|width| thumbnail_key(id, format, *width)),
        )
        .collect()
}

/// The content type of a key this crate made (read from its extension), or `None` for a key
/// that is not the shape of one: `images/<64 hex>/(original|w<digits>).(png|jpg)`.
pub fn content_type_of_key(key: &str) -> Option<&'static str> {
    let mut parts = key.split('/');
    let (Some("images"), Some(id), Some(name), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    ImageId::parse(id).ok()?;
    let (stem, extension) = name.split_once('.')?;
    let is_thumbnail = stem
        .strip_prefix('w')
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
    if stem != "original" && !is_thumbnail {
        return None;
    }
    match extension {
        "png" => Some(ImageFormat::Png.content_type()),
        "jpg" => Some(ImageFormat::Jpeg.content_type()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ImageId {
        ImageId::parse("ab".repeat(32)).unwrap()
    }

    #[test]
    fn keys_are_content_addressed_and_recognised() {
        assert_eq!(
            original_key(&id(), ImageFormat::Png),
            format!("images/{}/original.png", "ab".repeat(32))
        );
        for key in keys_of(&id(), ImageFormat::Jpeg) {
            assert_eq!(content_type_of_key(&key), Some("image/jpeg"), "{key}");
        }
        for key in [
            "images/x/original.png",
            "images/../../etc/passwd",
            &format!("images/{}/original.gif", "ab".repeat(32)),
            &format!("images/{}/w.png", "ab".repeat(32)),
            &format!("images/{}/other.png", "ab".repeat(32)),
            &format!("images/{}/original.png/x", "ab".repeat(32)),
        ] {
            assert_eq!(content_type_of_key(key), None, "{key}");
        }
    }

    #[test]
    fn a_display_width_takes_the_smallest_thumbnail_that_is_wide_enough() {
        assert_eq!(thumbnail_width_for(1), 256);
        assert_eq!(thumbnail_width_for(256), 256);
        assert_eq!(thumbnail_width_for(257), 768);
        assert_eq!(thumbnail_width_for(5000), 768);
    }
}
