//! What a browser may show of an upload, by its media type.
//!
//! An upload is a stranger's bytes served from our origin. Only media a
//! browser renders without executing anything (raster images, audio, video,
//! plain text) may be shown inline; the rest, SVG and HTML included, is a
//! download. The HTTP side applies this rule in `Content-Disposition`, the
//! relay in the disposition it announces to recipients (XEP-0447), so it
//! lives here, below both.

/// Raster image types browsers display without running anything.
const INLINE_IMAGES: [&str; 7] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/avif",
    "image/bmp",
    "image/apng",
];

/// Whether a file of `content_type` may be shown inline.
pub fn is_inline_safe(content_type: &str) -> bool {
    let essence = media_type_essence(content_type);
    INLINE_IMAGES.contains(&essence.as_str())
        || essence == "text/plain"
        || (essence.starts_with("audio/") && essence.len() > "audio/".len())
        || (essence.starts_with("video/") && essence.len() > "video/".len())
}

/// `Text/HTML; charset=x` as `text/html`.
pub fn media_type_essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_inert_media_is_inline() {
        for inline in [
            "image/png",
            "IMAGE/JPEG",
            "image/webp; q=1",
            "audio/ogg",
            "video/mp4",
            "text/plain; charset=utf-8",
        ] {
            assert!(is_inline_safe(inline), "{inline}");
        }
        for attachment in [
            "image/svg+xml",
            "text/html",
            "application/xhtml+xml",
            "text/xml",
            "application/javascript",
            "application/pdf",
            "application/octet-stream",
            "",
            "audio/",
            "text/plain2",
        ] {
            assert!(!is_inline_safe(attachment), "{attachment}");
        }
    }
}
