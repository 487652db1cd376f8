//! What an upload must be before it is stored: at most [`UploadLimits::max_bytes`], a PNG or a
//! JPEG by its magic bytes (a client's `Content-Type` is not believed), dimensions within the
//! limits (read from the header before anything is decoded: no decompression bombs), and an
//! image that decodes whole. Then the thumbnails are made, in the original's format.

use std::io::Cursor;

use bytes::Bytes;
use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageError, ImageReader};
use sha2::{Digest, Sha256};

use crate::{ImageFormat, ImageId, THUMBNAIL_WIDTHS};

/// How big an upload may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadLimits {
    pub max_bytes: usize,
    /// Widest and highest, in pixels.
    pub max_side: u32,
    /// Most pixels (width × height).
    pub max_pixels: u64,
}

impl Default for UploadLimits {
    fn default() -> Self {
        Self {
            max_bytes: crate::MAX_UPLOAD_BYTES,
            max_side: 8_000,
            max_pixels: 40_000_000,
        }
    }
}

/// Why an upload is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    #[error("the upload is empty")]
    Empty,
    #[error("the upload is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("only PNG and JPEG images are accepted")]
    UnsupportedType,
    #[error("the image is {width}×{height} pixels; at most {max_side} a side and {max_pixels} pixels are accepted")]
    TooManyPixels {
        width: u32,
        height: u32,
        max_side: u32,
        max_pixels: u64,
    },
    #[error("the image cannot be decoded: {0}")]
    Undecodable(String),
}

/// A checked upload with its thumbnails, ready to store.
#[derive(Clone, Debug)]
pub struct PreparedImage {
    pub id: ImageId,
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    pub original: Bytes,
    /// One per [`THUMBNAIL_WIDTHS`], in that order: (width of the key, encoded bytes).
    pub thumbnails: Vec<(u32, Bytes)>,
}

/// The format the bytes say they are in (their magic numbers), if one accepted.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else {
        None
    }
}

fn reader<'a>(
    bytes: &'a [u8],
    format: ImageFormat,
    limits: &UploadLimits,
) -> ImageReader<Cursor<&'a [u8]>> {
    let mut reader = ImageReader::with_format(
        Cursor::new(bytes),
        match format {
            ImageFormat::Png => image::ImageFormat::Png,
            ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        },
    );
    // the dimensions are checked against the limits before decoding (with the sizes in the
    // error); the decoder's own allocation limit is the backstop: an RGBA image of max_pixels
    // with 16-bit channels, and some room
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8) + (64 << 20));
    reader.limits(decoder_limits);
    reader
}

/// Checks an upload and makes its thumbnails. CPU-bound (decoding and resizing): call it on a
/// blocking thread.
pub fn prepare(bytes: Bytes, limits: &UploadLimits) -> Result<PreparedImage, UploadError> {
    if bytes.is_empty() {
        return Err(UploadError::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(UploadError::TooLarge {
            max: limits.max_bytes,
        });
    }
    let format = sniff(&bytes).ok_or(UploadError::UnsupportedType)?;
    let too_many = |width, height| UploadError::TooManyPixels {
        width,
        height,
        max_side: limits.max_side,
        max_pixels: limits.max_pixels,
    };
    // the header first: its dimensions decide whether decoding is attempted at all
    let (width, height) = reader(&bytes, format, limits)
        .into_dimensions()
        .map_err(undecodable)?;
    if width == 0 || height == 0 {
        return Err(UploadError::Undecodable("the image has no pixels".into()));
    }
    if width > limits.max_side
        || height > limits.max_side
        || u64::from(width) * u64::from(height) > limits.max_pixels
    {
        return Err(too_many(width, height));
    }
    let decoded = reader(&bytes, format, limits)
        .decode()
        .map_err(undecodable)?;
    let mut thumbnails = Vec::with_capacity(THUMBNAIL_WIDTHS.len());
    for thumbnail_width in THUMBNAIL_WIDTHS {
        let encoded = if width <= thumbnail_width {
            // no upscaling: the original serves this width as it is
            bytes.clone()
        } else {
            let scaled_height =
                (u64::from(height) * u64::from(thumbnail_width) / u64::from(width)).max(1) as u32;
            encode(
                &decoded.thumbnail_exact(thumbnail_width, scaled_height),
                format,
            )?
        };
        thumbnails.push((thumbnail_width, encoded));
    }
    let id = ImageId::parse(hex::encode(Sha256::digest(&bytes)))
        .expect("a sha256 in lowercase hex is an image id");
    Ok(PreparedImage {
        id,
        format,
        width,
        height,
        original: bytes,
        thumbnails,
    })
}

fn undecodable(error: ImageError) -> UploadError {
    UploadError::Undecodable(error.to_string())
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Result<Bytes, UploadError> {
    let mut out = Vec::new();
    match format {
        ImageFormat::Png => image
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .map_err(undecodable)?,
        ImageFormat::Jpeg => image
            .to_rgb8()
            .write_with_encoder(JpegEncoder::new_with_quality(&mut out, 85))
            .map_err(undecodable)?,
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Bytes {
        let image = image::RgbaImage::from_fn(width, height, |x, y| {
            image::Rgba([(x % 256) as u8, (y % 256) as u8, 128, 255])
        });
        let mut out = Vec::new();
        DynamicImage::ImageRgba8(image)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        Bytes::from(out)
    }

    fn jpeg(width: u32, height: u32) -> Bytes {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 64])
        });
        let mut out = Vec::new();
        image
            .write_with_encoder(JpegEncoder::new_with_quality(&mut out, 90))
            .unwrap();
        Bytes::from(out)
    }

    fn dimensions(bytes: &[u8]) -> (u32, u32) {
        image::load_from_memory(bytes)
            .unwrap()
            .to_rgb8()
            .dimensions()
    }

    #[test]
    fn a_png_gets_its_dimensions_id_and_thumbnails() {
        let bytes = png(1000, 500);
        let prepared = prepare(bytes.clone(), &UploadLimits::default()).unwrap();
        assert_eq!(prepared.format, ImageFormat::Png);
        assert_eq!((prepared.width, prepared.height), (1000, 500));
        assert_eq!(prepared.id.as_str(), hex::encode(Sha256::digest(&bytes)));
        let sizes: Vec<(u32, (u32, u32))> = prepared
            .thumbnails
            .iter()
            .map(|(w, b)| (*w, dimensions(b)))
            .collect();
        assert_eq!(sizes, [(256, (256, 128)), (768, (768, 384))]);
        assert!(prepared
            .thumbnails
            .iter()
            .all(|(_, b)| sniff(b) == Some(ImageFormat::Png)));
    }

    #[test]
    fn a_small_jpeg_is_its_own_thumbnail_and_never_upscaled() {
        let bytes = jpeg(300, 200);
        let prepared = prepare(bytes.clone(), &UploadLimits::default()).unwrap();
        assert_eq!(prepared.format, ImageFormat::Jpeg);
        assert_eq!(dimensions(&prepared.thumbnails[0].1), (256, 170));
        assert_eq!(prepared.thumbnails[1].1, bytes);
        assert_eq!(sniff(&prepared.thumbnails[0].1), Some(ImageFormat::Jpeg));
    }

    #[test]
    fn other_types_whatever_they_claim_are_unsupported() {
        let limits = UploadLimits::default();
        for bytes in [
            &b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"[..],
            b"RIFF\x00\x00\x00\x00WEBPVP8 ",
            b"<svg xmlns='http://www.w3.org/2000/svg'/>",
            b"just some text",
        ] {
            assert_eq!(
                prepare(Bytes::copy_from_slice(bytes), &limits).unwrap_err(),
                UploadError::UnsupportedType
            );
        }
        assert_eq!(
            prepare(Bytes::new(), &limits).unwrap_err(),
            UploadError::Empty
        );
    }

    #[test]
    fn truncated_oversized_and_huge_images_are_refused() {
        let limits = UploadLimits::default();
        let whole = png(64, 64);
        let truncated = whole.slice(..whole.len() / 2);
        assert!(matches!(
            prepare(truncated, &limits),
            Err(UploadError::Undecodable(_))
        ));
        assert!(matches!(
            prepare(whole.slice(..20), &limits),
            Err(UploadError::Undecodable(_))
        ));
        let small = UploadLimits {
            max_bytes: 100,
            ..limits
        };
        assert_eq!(
            prepare(whole.clone(), &small).unwrap_err(),
            UploadError::TooLarge { max: 100 }
        );
        let narrow = UploadLimits {
            max_side: 32,
            ..limits
        };
        assert!(matches!(
            prepare(whole, &narrow),
            Err(UploadError::TooManyPixels {
                width: 64,
                height: 64,
                ..
            })
        ));
    }
}
