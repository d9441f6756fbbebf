//! Thumbnails for relayed media messages (XEP-0264, carried inline as XEP-0231
//! Bits of Binary).
//!
//! The recipient sees a preview before downloading anything, so the preview
//! must travel inside the message itself: the whole stanza has to stay under
//! the 10 KiB that servers reliably accept, which leaves a few KiB for the
//! image once base64 has inflated it by a third. Hence a small longest side
//! and an encoder loop that lowers JPEG quality, then the size, until the
//! bytes fit.
//!
//! The input is whatever a client uploaded, so it is untrusted:
//! - the format is sniffed from the bytes, never taken from the declared
//!   media type, and only JPEG, PNG, GIF and WebP are decoded;
//! - the dimensions are read from the header and checked before any pixel is
//!   decoded, and the decoder gets [`image::Limits`], so a decompression bomb
//!   (a few bytes declaring 60000x60000 pixels) fails at once instead of
//!   allocating gigabytes;
//! - errors are values, nothing panics on malformed data.
//!
//! Photos are shown as the camera held them: the EXIF orientation is applied
//! to the thumbnail and to the reported dimensions. The encoders write no
//! metadata, so nothing of the original's EXIF (location, camera) leaks into
//! the preview.
//!
//! Speed: zune-jpeg (the JPEG decoder inside `image` 0.25) cannot decode at a
//! reduced scale, so JPEG pixels come from jpeg-decoder (image-rs's earlier
//! decoder), which can: it decodes a 12-megapixel photo at 1/8 scale,
//! skipping most of the inverse DCT, several times faster than a full decode
//! (see `examples/bench/hot_paths.rs`). Other formats are decoded in full.
//! The result is shrunk with [`image::imageops::thumbnail`], an
//! area-averaging integer-ratio resize that is much cheaper than the
//! convolution filters and good for large reductions. The orientation is
//! applied after the shrink, on a few thousand pixels instead of millions.
//!
//! Output format: JPEG, alpha flattened onto white, unless the image really is
//! transparent and a PNG of it fits the budget (stickers, logos). WebP is not
//! used: `image` 0.25 only encodes lossless WebP, which is larger than JPEG
//! for photos.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::metadata::Orientation;
use image::{
    DynamicImage, ExtendedColorType, GrayImage, ImageDecoder, ImageEncoder, ImageError,
    ImageFormat, ImageReader, Rgb, RgbImage, RgbaImage,
};

/// JPEG qualities tried in turn until the thumbnail fits the byte budget.
const JPEG_QUALITY_STEPS: [u8; 4] = [75, 60, 45, 30];

/// When even the lowest quality is too big, the longest side shrinks by this
/// fraction (3/4) and the qualities are tried again.
const SHRINK_NUMERATOR: u32 = 3;
const SHRINK_DENOMINATOR: u32 = 4;

/// Below this longest side a thumbnail is useless: give up instead.
const SMALLEST_USEFUL_SIDE: u32 = 16;

/// Bounds on the work and the result of [`make_thumbnail`].
#[derive(Debug, Clone)]
pub struct ThumbnailLimits {
    /// Longest side of the thumbnail, in pixels.
    pub max_side: u32,
    /// Size of the encoded thumbnail: the whole stanza must stay under 10 KiB
    /// after base64.
    pub max_bytes: usize,
    /// Images with more pixels than this are not decoded at all.
    pub max_input_pixels: u64,
    /// Memory the decoder may allocate, the decoded image included.
    pub max_decode_alloc: u64,
}

impl Default for ThumbnailLimits {
    fn default() -> Self {
        ThumbnailLimits {
            max_side: 128,
            max_bytes: 6 * 1024,
            max_input_pixels: 64 * 1_000_000,
            max_decode_alloc: 256 * 1024 * 1024,
        }
    }
}

/// An encoded thumbnail, ready for a Bits of Binary `<data/>` element.
#[derive(Debug, Clone)]
pub struct Thumbnail {
    pub bytes: Vec<u8>,
    /// `"image/jpeg"` or `"image/png"`.
    pub media_type: &'static str,
    pub width: u32,
    pub height: u32,
}

/// Dimensions of an image as displayed, i.e. after its EXIF orientation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ThumbnailError {
    /// Not a JPEG, PNG, GIF or WebP image, or one using a feature the decoder
    /// lacks (e.g. arithmetic-coded JPEG).
    #[error("not a supported image (JPEG, PNG, GIF or WebP)")]
    Unsupported,
    /// The image is bigger than the [`ThumbnailLimits`] allow.
    #[error("image exceeds the thumbnail limits: {reason}")]
    TooLarge { reason: String },
    #[error("cannot decode image: {0}")]
    Decode(String),
    #[error("cannot encode thumbnail: {0}")]
    Encode(String),
    /// Even the smallest, lowest-quality thumbnail is over the byte budget.
    #[error("no thumbnail fits in {max_bytes} bytes")]
    DoesNotFit { max_bytes: usize },
}

/// Makes a thumbnail of an image file (JPEG, PNG, GIF first frame, WebP).
/// Blocking, CPU bound: callers run it on the blocking pool.
///
/// `declared_type` is the sender's claim, only logged when the bytes
/// disagree: the format is always detected from the bytes.
pub fn make_thumbnail(
    input: &[u8],
    declared_type: &str,
    limits: &ThumbnailLimits,
) -> Result<(ImageInfo, Thumbnail), ThumbnailError> {
    let format = detect_format(input)?;
    if !declared_type.eq_ignore_ascii_case(format.to_mime_type()) {
        tracing::debug!(
            declared_type,
            detected_type = format.to_mime_type(),
            "declared media type differs from the image bytes"
        );
    }

    let mut decoder = open_decoder(input, format, limits.max_decode_alloc)?;
    let (width, height) = decoder.dimensions();
    let decoded_bytes = decoder.total_bytes();
    check_decode_cost(width, height, decoded_bytes, limits)?;
    decoder
        .set_limits(decode_limits(limits, decoded_bytes))
        .map_err(from_image_error)?;
    let orientation = decoder.orientation().map_err(from_image_error)?;
    let (thumbnail_width, thumbnail_height) = fit_within(width, height, limits.max_side);
    let reduced = match format {
        ImageFormat::Jpeg => decode_jpeg_reduced(input, thumbnail_width, thumbnail_height, limits),
        _ => None,
    };
    let image = match reduced {
        Some(image) => image,
        None => DynamicImage::from_decoder(decoder).map_err(from_image_error)?,
    };

    let mut small = image.thumbnail_exact(thumbnail_width, thumbnail_height);
    drop(image); // the full-size pixels are no longer needed: free them before encoding
    small.apply_orientation(orientation);

    let thumbnail = encode_within_budget(small, limits.max_bytes)?;
    Ok((displayed_size(width, height, orientation), thumbnail))
}

/// Reads just the dimensions (after orientation) without decoding pixels, for
/// the file metadata of images.
pub fn image_info(input: &[u8]) -> Result<ImageInfo, ThumbnailError> {
    let format = detect_format(input)?;
    let mut decoder = open_decoder(input, format, ThumbnailLimits::default().max_decode_alloc)?;
    let (width, height) = decoder.dimensions();
    let orientation = decoder.orientation().map_err(from_image_error)?;
    Ok(displayed_size(width, height, orientation))
}

fn detect_format(input: &[u8]) -> Result<ImageFormat, ThumbnailError> {
    match image::guess_format(input) {
        Ok(
            format @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Gif | ImageFormat::WebP),
        ) => Ok(format),
        _ => Err(ThumbnailError::Unsupported),
    }
}

/// Parses the header only. No side limit yet, so that the dimensions are
/// known and reported; `max_alloc` already bounds what the PNG decoder
/// inflates while reading the chunks before the pixels.
fn open_decoder(
    input: &[u8],
    format: ImageFormat,
    max_decode_alloc: u64,
) -> Result<impl ImageDecoder + '_, ThumbnailError> {
    let mut header_limits = image::Limits::default();
    header_limits.max_alloc = Some(max_decode_alloc);
    let mut reader = ImageReader::with_format(Cursor::new(input), format);
    reader.limits(header_limits);
    reader.into_decoder().map_err(from_image_error)
}

fn check_decode_cost(
    width: u32,
    height: u32,
    decoded_bytes: u64,
    limits: &ThumbnailLimits,
) -> Result<(), ThumbnailError> {
    if width == 0 || height == 0 {
        return Err(ThumbnailError::Decode(format!(
            "image has no pixels ({width}x{height})"
        )));
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_input_pixels {
        return Err(ThumbnailError::TooLarge {
            reason: format!(
                "{width}x{height} is {pixels} pixels, at most {} allowed",
                limits.max_input_pixels
            ),
        });
    }
    if decoded_bytes > limits.max_decode_alloc {
        return Err(ThumbnailError::TooLarge {
            reason: format!(
                "decoding {width}x{height} needs {decoded_bytes} bytes, at most {} allowed",
                limits.max_decode_alloc
            ),
        });
    }
    Ok(())
}

/// Decodes a JPEG at the smallest DCT scale (1/8, 1/4 or 1/2) that still
/// gives at least twice the thumbnail's size, so that the shrink after it
/// averages enough pixels for a smooth preview. At 1/8 the decoder skips
/// nearly all of the inverse DCT and colour conversion of a full decode.
///
/// `None` when jpeg-decoder cannot (CMYK or 16-bit images, features it
/// lacks, data it finds malformed): the caller then decodes the full image
/// with `image`, whose decoder is more lenient, so no input that decoded
/// before fails now. The dimensions were checked against the limits first.
fn decode_jpeg_reduced(
    input: &[u8],
    thumbnail_width: u32,
    thumbnail_height: u32,
    limits: &ThumbnailLimits,
) -> Option<DynamicImage> {
    let mut decoder = jpeg_decoder::Decoder::new(input);
    decoder.set_max_decoding_buffer_size(usize::try_from(limits.max_decode_alloc).ok()?);
    let wanted = |side: u32| u16::try_from(side.saturating_mul(2)).unwrap_or(u16::MAX);
    let (width, height) = decoder
        .scale(wanted(thumbnail_width), wanted(thumbnail_height))
        .ok()?;
    let pixels = decoder.decode().ok()?;
    let (width, height) = (u32::from(width), u32::from(height));
    match decoder.info()?.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => {
            RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8)
        }
        jpeg_decoder::PixelFormat::L8 => {
            GrayImage::from_raw(width, height, pixels).map(DynamicImage::ImageLuma8)
        }
        jpeg_decoder::PixelFormat::L16 | jpeg_decoder::PixelFormat::CMYK32 => None,
    }
}

/// Limits enforced by the decoder itself while decoding. The side limit is
/// the strict one `image` guarantees; the allocation limit is best effort
/// (zune-jpeg ignores it, hence [`check_decode_cost`] beforehand) and, as in
/// [`ImageReader::decode`], the output buffer counts towards it.
fn decode_limits(limits: &ThumbnailLimits, decoded_bytes: u64) -> image::Limits {
    let longest_allowed_side = u32::try_from(limits.max_input_pixels).unwrap_or(u32::MAX);
    let mut decode_limits = image::Limits::default();
    decode_limits.max_image_width = Some(longest_allowed_side);
    decode_limits.max_image_height = Some(longest_allowed_side);
    decode_limits.max_alloc = Some(limits.max_decode_alloc.saturating_sub(decoded_bytes));
    decode_limits
}

fn from_image_error(error: ImageError) -> ThumbnailError {
    match error {
        ImageError::Unsupported(_) => ThumbnailError::Unsupported,
        ImageError::Limits(limit) => ThumbnailError::TooLarge {
            reason: limit.to_string(),
        },
        other => ThumbnailError::Decode(other.to_string()),
    }
}

fn displayed_size(width: u32, height: u32, orientation: Orientation) -> ImageInfo {
    match orientation {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => ImageInfo {
            width: height,
            height: width,
        },
        _ => ImageInfo { width, height },
    }
}

/// Largest size with the same aspect ratio whose longest side is at most
/// `max_side`; never larger than the original, never a zero side.
fn fit_within(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let max_side = max_side.max(1);
    let longest = width.max(height);
    if longest <= max_side {
        return (width, height);
    }
    let scale = |side: u32| {
        let scaled =
            (u64::from(side) * u64::from(max_side) + u64::from(longest) / 2) / u64::from(longest);
        // `side <= longest`, so `scaled <= max_side` and fits in a u32.
        u32::try_from(scaled).unwrap_or(max_side).max(1)
    };
    (scale(width), scale(height))
}

fn encode_within_budget(
    mut image: DynamicImage,
    max_bytes: usize,
) -> Result<Thumbnail, ThumbnailError> {
    loop {
        if let Some(thumbnail) = encode_if_fits(&image, max_bytes)? {
            return Ok(thumbnail);
        }
        let longest = image.width().max(image.height());
        if longest <= SMALLEST_USEFUL_SIDE {
            return Err(ThumbnailError::DoesNotFit { max_bytes });
        }
        let smaller_side =
            (longest * SHRINK_NUMERATOR / SHRINK_DENOMINATOR).max(SMALLEST_USEFUL_SIDE);
        let (width, height) = fit_within(image.width(), image.height(), smaller_side);
        image = image.thumbnail_exact(width, height);
    }
}

/// The smallest acceptable encoding of `image` at its current size, if one
/// fits in `max_bytes`: PNG for transparent images when it fits (flattening
/// would lose the transparency), otherwise JPEG at decreasing quality.
fn encode_if_fits(
    image: &DynamicImage,
    max_bytes: usize,
) -> Result<Option<Thumbnail>, ThumbnailError> {
    let rgba = image.to_rgba8();
    let (width, height) = rgba.dimensions();
    let is_transparent = image.has_alpha() && rgba.pixels().any(|pixel| pixel[3] < u8::MAX);
    if is_transparent {
        let png = encode_png(&rgba)?;
        if png.len() <= max_bytes {
            return Ok(Some(Thumbnail {
                bytes: png,
                media_type: "image/png",
                width,
                height,
            }));
        }
    }
    let opaque = flatten_onto_white(&rgba);
    for quality in JPEG_QUALITY_STEPS {
        let jpeg = encode_jpeg(&opaque, quality)?;
        if jpeg.len() <= max_bytes {
            return Ok(Some(Thumbnail {
                bytes: jpeg,
                media_type: "image/jpeg",
                width,
                height,
            }));
        }
    }
    Ok(None)
}

fn flatten_onto_white(rgba: &RgbaImage) -> RgbImage {
    let (width, height) = rgba.dimensions();
    RgbImage::from_fn(width, height, |x, y| {
        let [red, green, blue, alpha] = rgba.get_pixel(x, y).0;
        let over_white = |channel: u8| {
            let alpha = u16::from(alpha);
            // At most 255 * 255 + 127, within u16; divided by 255, within u8.
            let blended = (u16::from(channel) * alpha + 255 * (255 - alpha) + 127) / 255;
            u8::try_from(blended).unwrap_or(u8::MAX)
        };
        Rgb([over_white(red), over_white(green), over_white(blue)])
    })
}

fn encode_jpeg(image: &RgbImage, quality: u8) -> Result<Vec<u8>, ThumbnailError> {
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode_image(image)
        .map_err(|error| ThumbnailError::Encode(error.to_string()))?;
    Ok(bytes)
}

fn encode_png(image: &RgbaImage) -> Result<Vec<u8>, ThumbnailError> {
    let mut bytes = Vec::new();
    PngEncoder::new_with_quality(&mut bytes, CompressionType::Best, FilterType::Adaptive)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            ExtendedColorType::Rgba8,
        )
        .map_err(|error| ThumbnailError::Encode(error.to_string()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgba;

    /// Deterministic pseudo-random bytes (xorshift), so tests need no seed
    /// plumbing and always see the same "noise".
    fn noise_bytes(len: usize, mut state: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect()
    }

    fn gradient(width: u32, height: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
            Rgb([
                (x * 255 / width.max(1)) as u8,
                (y * 255 / height.max(1)) as u8,
                128,
            ])
        }))
    }

    fn noise(width: u32, height: u32) -> DynamicImage {
        let bytes = noise_bytes((width * height * 3) as usize, 0x9E37_79B9_7F4A_7C15);
        DynamicImage::ImageRgb8(RgbImage::from_raw(width, height, bytes).expect("exact length"))
    }

    /// Noise made of `block`-pixel squares, so that it is still noise after
    /// the area-averaging shrink (pixel-level noise averages out to grey).
    fn block_noise(width: u32, height: u32, block: u32) -> DynamicImage {
        let cells = noise(width.div_ceil(block), height.div_ceil(block)).to_rgb8();
        DynamicImage::ImageRgb8(RgbImage::from_fn(width, height, |x, y| {
            *cells.get_pixel(x / block, y / block)
        }))
    }

    fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut bytes = Vec::new();
        let image = match format {
            ImageFormat::Gif => DynamicImage::ImageRgba8(image.to_rgba8()),
            _ => image.clone(),
        };
        image
            .write_to(&mut Cursor::new(&mut bytes), format)
            .expect("test image encodes");
        bytes
    }

    fn decoded(thumbnail: &Thumbnail) -> DynamicImage {
        image::load_from_memory(&thumbnail.bytes).expect("thumbnail decodes")
    }

    fn displayed(info: ImageInfo) -> (u32, u32) {
        (info.width, info.height)
    }

    fn thumbnail_of(input: &[u8]) -> Result<(ImageInfo, Thumbnail), ThumbnailError> {
        make_thumbnail(
            input,
            "application/octet-stream",
            &ThumbnailLimits::default(),
        )
    }

    /// A JPEG whose EXIF says "rotate 90° clockwise to display" (orientation
    /// 6): an APP1 segment with a minimal big-endian TIFF holding one IFD
    /// entry, tag 0x0112, inserted right after SOI.
    fn jpeg_with_orientation_6(image: &DynamicImage) -> Vec<u8> {
        let jpeg = encode(image, ImageFormat::Jpeg);
        let tiff: [u8; 26] = [
            b'M', b'M', 0x00, 0x2A, // big endian, TIFF magic
            0x00, 0x00, 0x00, 0x08, // offset of IFD0
            0x00, 0x01, // one entry
            0x01, 0x12, // tag: Orientation
            0x00, 0x03, // type: SHORT
            0x00, 0x00, 0x00, 0x01, // count
            0x00, 0x06, 0x00, 0x00, // value 6, padded
            0x00, 0x00, 0x00, 0x00, // no next IFD
        ];
        let payload_len = b"Exif\0\0".len() + tiff.len();
        let segment_len = u16::try_from(2 + payload_len).expect("small segment");
        let mut with_exif = jpeg[..2].to_vec(); // SOI
        with_exif.extend_from_slice(&[0xFF, 0xE1]);
        with_exif.extend_from_slice(&segment_len.to_be_bytes());
        with_exif.extend_from_slice(b"Exif\0\0");
        with_exif.extend_from_slice(&tiff);
        with_exif.extend_from_slice(&jpeg[2..]);
        with_exif
    }

    /// Largest difference of any channel of any pixel.
    fn max_channel_difference(a: &RgbImage, b: &RgbImage) -> u8 {
        assert_eq!(a.dimensions(), b.dimensions());
        a.pixels()
            .zip(b.pixels())
            .flat_map(|(a, b)| a.0.into_iter().zip(b.0).map(|(x, y)| x.abs_diff(y)))
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn large_jpegs_decode_at_reduced_scale_and_look_the_same() {
        let original = gradient(2048, 1536);
        let jpeg = encode(&original, ImageFormat::Jpeg);
        let limits = ThumbnailLimits::default();
        let reduced = decode_jpeg_reduced(&jpeg, 128, 96, &limits).expect("reduced decode");
        // 1/8 scale: the smallest that is at least twice the thumbnail.
        assert_eq!((reduced.width(), reduced.height()), (256, 192));
        let from_full = original.thumbnail_exact(128, 96).to_rgb8();
        let from_reduced = reduced.thumbnail_exact(128, 96).to_rgb8();
        assert!(max_channel_difference(&from_full, &from_reduced) <= 16);

        // A thumbnail of nearly the full size needs every pixel.
        let reduced = decode_jpeg_reduced(&jpeg, 1500, 1125, &limits).expect("decode");
        assert_eq!((reduced.width(), reduced.height()), (2048, 1536));
    }

    #[test]
    fn grey_jpegs_decode_at_reduced_scale() {
        let grey = DynamicImage::ImageLuma8(gradient(1024, 512).to_luma8());
        let jpeg = encode(&grey, ImageFormat::Jpeg);
        let reduced = decode_jpeg_reduced(&jpeg, 128, 64, &ThumbnailLimits::default())
            .expect("reduced decode");
        assert!(matches!(reduced, DynamicImage::ImageLuma8(_)));
        assert_eq!((reduced.width(), reduced.height()), (256, 128));
        let (info, thumbnail) = thumbnail_of(&jpeg).expect("thumbnail");
        assert_eq!(displayed(info), (1024, 512));
        assert_eq!((thumbnail.width, thumbnail.height), (128, 64));
    }

    /// A valid small PNG whose IHDR is patched to claim `width`x`height`,
    /// with the chunk CRC recomputed so decoders accept the header.
    fn png_claiming(width: u32, height: u32) -> Vec<u8> {
        let mut png = encode(&gradient(8, 8), ImageFormat::Png);
        // Signature (8), IHDR length (4), "IHDR" (4), then width and height.
        png[16..20].copy_from_slice(&width.to_be_bytes());
        png[20..24].copy_from_slice(&height.to_be_bytes());
        let crc = crc32(&png[12..29]); // chunk type + 13 data bytes
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        png
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = u32::MAX;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn every_supported_format_gives_a_thumbnail_of_the_announced_size() {
        let original = gradient(300, 200);
        for format in [
            ImageFormat::Jpeg,
            ImageFormat::Png,
            ImageFormat::Gif,
            ImageFormat::WebP,
        ] {
            let (info, thumbnail) = thumbnail_of(&encode(&original, format))
                .unwrap_or_else(|error| panic!("{format:?}: {error}"));
            assert_eq!(displayed(info), (300, 200), "{format:?}");
            assert_eq!((thumbnail.width, thumbnail.height), (128, 85), "{format:?}");
            let image = decoded(&thumbnail);
            assert_eq!(
                (image.width(), image.height()),
                (thumbnail.width, thumbnail.height),
                "{format:?}"
            );
            assert!(thumbnail.bytes.len() <= ThumbnailLimits::default().max_bytes);
            assert_eq!(thumbnail.media_type, "image/jpeg", "{format:?}");
        }
    }

    #[test]
    fn a_single_pixel_stays_a_single_pixel() {
        let (info, thumbnail) = thumbnail_of(&encode(&gradient(1, 1), ImageFormat::Png)).unwrap();
        assert_eq!(displayed(info), (1, 1));
        assert_eq!((thumbnail.width, thumbnail.height), (1, 1));
        let image = decoded(&thumbnail);
        assert_eq!((image.width(), image.height()), (1, 1));
    }

    #[test]
    fn an_extreme_aspect_ratio_keeps_a_nonzero_short_side() {
        for (width, height, expected) in [(3000, 10, (128, 1)), (10, 3000, (1, 128))] {
            let (_, thumbnail) =
                thumbnail_of(&encode(&gradient(width, height), ImageFormat::Png)).unwrap();
            assert_eq!((thumbnail.width, thumbnail.height), expected);
            let image = decoded(&thumbnail);
            assert_eq!((image.width(), image.height()), expected);
        }
    }

    #[test]
    fn a_small_image_is_not_upscaled() {
        let (info, thumbnail) = thumbnail_of(&encode(&gradient(50, 30), ImageFormat::Png)).unwrap();
        assert_eq!(displayed(info), (50, 30));
        assert_eq!((thumbnail.width, thumbnail.height), (50, 30));
    }

    #[test]
    fn exif_orientation_is_applied_and_not_copied() {
        // Stored landscape with a red left edge; displayed portrait, where the
        // left edge becomes the top edge.
        let stored = DynamicImage::ImageRgb8(RgbImage::from_fn(200, 100, |x, _| {
            if x < 20 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        }));
        let input = jpeg_with_orientation_6(&stored);

        assert_eq!(displayed(image_info(&input).unwrap()), (100, 200));
        let (info, thumbnail) = thumbnail_of(&input).unwrap();
        assert_eq!(displayed(info), (100, 200));
        assert_eq!((thumbnail.width, thumbnail.height), (64, 128));

        let shown = decoded(&thumbnail).to_rgb8();
        assert_eq!(shown.dimensions(), (64, 128));
        let top = shown.get_pixel(32, 2).0;
        let bottom = shown.get_pixel(32, 125).0;
        assert!(top[0] > 200 && top[2] < 60, "top should be red: {top:?}");
        assert!(
            bottom[2] > 200 && bottom[0] < 60,
            "bottom should be blue: {bottom:?}"
        );

        let mut decoder = ImageReader::new(Cursor::new(&thumbnail.bytes))
            .with_guessed_format()
            .unwrap()
            .into_decoder()
            .unwrap();
        assert_eq!(decoder.exif_metadata().unwrap(), None);
    }

    #[test]
    fn a_decompression_bomb_is_refused_from_its_header() {
        let bomb = png_claiming(60_000, 60_000);
        assert_eq!(displayed(image_info(&bomb).unwrap()), (60_000, 60_000));
        // TooLarge (not a decode error) shows the header alone settled it.
        let result = thumbnail_of(&bomb);
        assert!(
            matches!(result, Err(ThumbnailError::TooLarge { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn the_decode_memory_budget_is_enforced() {
        let limits = ThumbnailLimits {
            max_decode_alloc: 10_000,
            ..ThumbnailLimits::default()
        };
        // 100x100 RGB needs 30000 bytes.
        let result = make_thumbnail(&encode(&gradient(100, 100), ImageFormat::Png), "", &limits);
        assert!(
            matches!(result, Err(ThumbnailError::TooLarge { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn broken_input_is_an_error_not_a_panic() {
        let jpeg = encode(&gradient(64, 48), ImageFormat::Jpeg);
        assert!(thumbnail_of(&jpeg[..100]).is_err());
        assert!(matches!(
            thumbnail_of(&noise_bytes(4096, 7)),
            Err(ThumbnailError::Unsupported)
        ));
        assert!(matches!(
            thumbnail_of(b""),
            Err(ThumbnailError::Unsupported)
        ));

        // Every truncation and a few corruptions of every format: any
        // outcome but a panic is fine. Decoders are lenient: zune-jpeg, in
        // the non-strict mode `image` always uses, decodes a JPEG cut in the
        // middle of its scan and fills the missing part.
        for format in [
            ImageFormat::Jpeg,
            ImageFormat::Png,
            ImageFormat::Gif,
            ImageFormat::WebP,
        ] {
            let valid = encode(&gradient(24, 16), format);
            for cut in 0..valid.len() {
                let _ = thumbnail_of(&valid[..cut]);
                let _ = image_info(&valid[..cut]);
            }
            for (position, garbage) in noise_bytes(valid.len(), 11).into_iter().enumerate() {
                if position % 7 != 0 {
                    continue;
                }
                let mut corrupt = valid.clone();
                corrupt[position] ^= garbage | 1;
                let _ = thumbnail_of(&corrupt);
            }
        }
    }

    #[test]
    fn non_images_are_unsupported_whatever_their_declared_type() {
        let svg = br#"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>"#;
        let pdf = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n1 0 obj\n<<>>\nendobj\n";
        for input in [&svg[..], &pdf[..]] {
            let result = make_thumbnail(input, "image/jpeg", &ThumbnailLimits::default());
            assert!(
                matches!(result, Err(ThumbnailError::Unsupported)),
                "{result:?}"
            );
            assert!(matches!(
                image_info(input),
                Err(ThumbnailError::Unsupported)
            ));
        }
        // And an image declared as something else is still recognised.
        let png = encode(&gradient(10, 10), ImageFormat::Png);
        assert!(make_thumbnail(&png, "image/jpeg", &ThumbnailLimits::default()).is_ok());
    }

    #[test]
    fn a_noisy_image_still_fits_the_byte_budget() {
        let limits = ThumbnailLimits::default();
        let input = encode(&block_noise(2000, 2000, 16), ImageFormat::Png);
        let (_, thumbnail) = make_thumbnail(&input, "", &limits).unwrap();
        assert!(thumbnail.bytes.len() <= limits.max_bytes);
        assert_eq!(thumbnail.media_type, "image/jpeg");
        let image = decoded(&thumbnail);
        assert_eq!(
            (image.width(), image.height()),
            (thumbnail.width, thumbnail.height)
        );
    }

    #[test]
    fn a_tight_budget_shrinks_the_thumbnail_and_an_impossible_one_fails() {
        let input = encode(&noise(256, 256), ImageFormat::Png);
        let tight = ThumbnailLimits {
            max_bytes: 1500,
            ..ThumbnailLimits::default()
        };
        let (_, thumbnail) = make_thumbnail(&input, "", &tight).unwrap();
        assert!(thumbnail.bytes.len() <= 1500);
        assert!(thumbnail.width < 128 && thumbnail.width == thumbnail.height);

        let impossible = ThumbnailLimits {
            max_bytes: 10,
            ..ThumbnailLimits::default()
        };
        assert!(matches!(
            make_thumbnail(&input, "", &impossible),
            Err(ThumbnailError::DoesNotFit { max_bytes: 10 })
        ));
    }

    #[test]
    fn transparency_is_kept_as_png_when_it_fits_and_flattened_onto_white_otherwise() {
        let sticker = DynamicImage::ImageRgba8(RgbaImage::from_fn(200, 200, |x, _| {
            if x < 100 {
                Rgba([0, 0, 0, 0])
            } else {
                Rgba([255, 0, 0, 255])
            }
        }));
        let (_, thumbnail) = thumbnail_of(&encode(&sticker, ImageFormat::Png)).unwrap();
        assert_eq!(thumbnail.media_type, "image/png");
        assert_eq!(decoded(&thumbnail).to_rgba8().get_pixel(10, 64)[3], 0);

        // Transparent noise does not fit as PNG: JPEG, transparent part white.
        let noisy = noise(200, 200).to_rgba8();
        let noisy_sticker = DynamicImage::ImageRgba8(RgbaImage::from_fn(200, 200, |x, y| {
            if x < 100 {
                Rgba([0, 0, 0, 0])
            } else {
                *noisy.get_pixel(x, y)
            }
        }));
        let (_, thumbnail) = thumbnail_of(&encode(&noisy_sticker, ImageFormat::Png)).unwrap();
        assert_eq!(thumbnail.media_type, "image/jpeg");
        let left = decoded(&thumbnail).to_rgb8().get_pixel(10, 64).0;
        assert!(left.iter().all(|&channel| channel > 240), "{left:?}");

        // An alpha channel that is fully opaque is not transparency.
        let opaque = DynamicImage::ImageRgba8(gradient(64, 64).to_rgba8());
        let (_, thumbnail) = thumbnail_of(&encode(&opaque, ImageFormat::Png)).unwrap();
        assert_eq!(thumbnail.media_type, "image/jpeg");
    }
}
