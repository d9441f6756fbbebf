//! Response headers that keep uploaded files inert in a browser.
//!
//! An upload is a stranger's bytes served from our origin. Whatever its
//! declared type, it must never run: every response forbids scripts, framing
//! and sniffing, and only media a browser renders without executing anything
//! (raster images, audio, video, plain text) is shown inline; the rest,
//! including SVG and HTML, is a download.

use http::header::{HeaderName, HeaderValue};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::media::is_inline_safe;

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'; sandbox";

/// Headers set on every response.
pub fn security_headers() -> [(HeaderName, HeaderValue); 4] {
    [
        (
            http::header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            http::header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            http::header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ),
        (
            http::header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ]
}

/// RFC 5987 `attr-char`: what may stay unencoded in `filename*`.
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `inline` or `attachment`, with an RFC 6266 ASCII `filename` and an RFC 5987
/// `filename*` carrying the exact UTF-8 name.
pub fn content_disposition(content_type: &str, filename: &str) -> HeaderValue {
    let disposition = if is_inline_safe(content_type) {
        "inline"
    } else {
        "attachment"
    };
    let fallback: String = filename
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' && c != '%' => c,
            _ => '_',
        })
        .collect();
    let exact = utf8_percent_encode(filename, ATTR_CHAR);
    let value = format!("{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{exact}");
    // Every byte above is printable ASCII, which a header value always accepts.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disposition_carries_both_filename_forms() {
        let value = content_disposition("image/png", "très cool.png");
        assert_eq!(
            value.to_str().unwrap(),
            "inline; filename=\"tr_s cool.png\"; filename*=UTF-8''tr%C3%A8s%20cool.png"
        );
        let value = content_disposition("text/html", "x.html");
        assert!(value.to_str().unwrap().starts_with("attachment;"));
    }

    #[test]
    fn hostile_names_cannot_break_out_of_the_header() {
        let value = content_disposition("text/plain", "a\"; filename=evil.html\r\nSet-Cookie: x");
        let text = value.to_str().unwrap();
        assert!(!text.contains('\r') && !text.contains('\n'));
        assert!(text.starts_with("inline; filename=\"a_; filename=evil.html__Set-Cookie: x\"; "));
    }
}
